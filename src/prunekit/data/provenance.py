"""What a run actually read: the resolved folder of a data set and, per file, its size and SHA-256, for
report.json ("data_read"). Checksums are cached per (path, size, mtime) so a second call costs nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import cifar, fashion_mnist, folder
from .api import canonical_name

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
MAX_HASHED_FILES = 64  # image trees: beyond this many files only names and sizes are summarised


def file_record(path: Path, checksum: bool = True) -> dict[str, Any]:
    """{"name", "bytes", "sha256"} of one file (sha256 omitted when checksum is False)."""
    st = path.stat()
    rec: dict[str, Any] = {"name": path.name, "bytes": st.st_size}
    if checksum:
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _SHA_CACHE:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _SHA_CACHE[key] = h.hexdigest()
        rec["sha256"] = _SHA_CACHE[key]
    return rec


def _tree_summary(root: Path) -> dict[str, Any]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listing = hashlib.sha256()
    for p in files:
        listing.update(f"{p.relative_to(root)}\0{p.stat().st_size}\n".encode())
    out: dict[str, Any] = {"root": str(root.resolve()), "file_count": len(files),
                           "bytes": sum(p.stat().st_size for p in files), "listing_sha256": listing.hexdigest()}
    if len(files) <= MAX_HASHED_FILES:
        out["files"] = [{**file_record(p), "name": str(p.relative_to(root))} for p in files]
    return out


def data_read(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """The files a data set is read from, as found now: {"dataset", "root", "files": [{"name", "bytes",
    "sha256"}]} (image trees: a file count, total bytes and a checksum of the listing instead)."""
    key = canonical_name(name)
    if key == "fashion-mnist":
        root = fashion_mnist.locate(data_dir, download_ok=False).resolve()
        files = [fashion_mnist._find_file(root, stem) for pair in fashion_mnist.FILES.values() for stem in pair]
        return {"dataset": key, "root": str(root), "files": [file_record(p) for p in files if p is not None]}
    if key == "cifar10":
        root = cifar.locate(data_dir).resolve()
        files = [root / "test_batch", *cifar._batch_files(root, "train")]
        return {"dataset": key, "root": str(root), "files": [file_record(p) for p in files]}
    if key == "digits":
        import sklearn
        from sklearn.datasets import load_digits  # noqa: F401  (the module whose data file is read)
        path = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
        rec = {"dataset": key, "root": str(path.parent), "source": f"scikit-learn {sklearn.__version__}"}
        return {**rec, "files": [file_record(path)] if path.is_file() else []}
    train_root, test_root = folder.split_roots(data_dir)
    out = {"dataset": key, "train": _tree_summary(train_root)}
    if test_root is not None:
        out["test"] = _tree_summary(test_root)
    return out
