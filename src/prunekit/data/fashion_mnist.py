"""Fashion-MNIST: locate the IDX files (explicit dir, $PRUNEKIT_DATA, the Debian package, the user
cache), download them into the cache as a last resort, and load them once per process."""
from __future__ import annotations

import functools
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils.fileio import atomic_write
from .base import DataFormatError, DataNotFoundError
from .idx import read_idx

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIRS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
MEAN, STD = (0.2860,), (0.3530,)
DOWNLOAD_TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """The user cache folder for Fashion-MNIST ($XDG_CACHE_HOME or ~/.cache, then prunekit/)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prunekit" / "fashion-mnist"


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    """Whether folder holds all four files (each gzipped or raw)."""
    return all(_find_file(folder, stem) for pair in FILES.values() for stem in pair)


def _expand(root: Path) -> list[Path]:
    """A root and the usual sub-folders a data set lives in below it."""
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]


@dataclass
class SearchPlace:
    """One place searched, for the error message."""

    label: str
    path: Path


def search_places(data_dir: str | Path | None = None) -> list[SearchPlace]:
    """Every folder searched, in order."""
    places: list[SearchPlace] = []
    if data_dir is not None:
        places += [SearchPlace("data_dir / --data-dir", p) for p in _expand(Path(data_dir))]
    env = os.environ.get("PRUNEKIT_DATA")
    if env:
        places += [SearchPlace("$PRUNEKIT_DATA", p) for p in _expand(Path(env))]
    places += [SearchPlace("system (Debian dataset-fashion-mnist)", p) for p in SYSTEM_DIRS]
    places.append(SearchPlace("user cache", cache_dir()))
    return places


def download(dest: Path, url: str = URL, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download the four gzipped files into dest (each written atomically) and check they parse."""
    dest.mkdir(parents=True, exist_ok=True)
    for pair in FILES.values():
        for stem in pair:
            target = dest / (stem + ".gz")
            if target.is_file():
                continue
            def fetch(tmp: Path, source: str = url + stem + ".gz") -> None:
                with open(tmp, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
                read_idx(tmp)  # refuse to keep a broken download

            atomic_write(target, fetch)
    return dest


def missing_files(folder: Path) -> list[str]:
    """The Fashion-MNIST files (stems) that `folder` lacks, gzipped or raw."""
    return [stem for pair in FILES.values() for stem in pair if _find_file(folder, stem) is None]


def _explicit(data_dir: str | Path) -> Path:
    """An explicit data folder (or one of its usual sub-folders) holding every file; never another place."""
    places = _expand(Path(data_dir))
    for p in places:
        if _complete(p):
            return p
    best = min(places, key=lambda p: len(missing_files(p)))
    state = "does not exist" if not Path(data_dir).exists() else f"lacks {', '.join(missing_files(best))}"
    others = ", ".join(str(p.path) for p in search_places(None))
    raise DataNotFoundError(
        f"Fashion-MNIST not found in --data-dir {data_dir}: {state} (searched "
        f"{', '.join(str(p) for p in places)}). Files needed (gzipped or raw): "
        + ", ".join(s for pair in FILES.values() for s in pair) + f". An explicit --data-dir is the only place "
        f"read; without it prunekit searches $PRUNEKIT_DATA and {others}.")


def locate(data_dir: str | Path | None = None, download_ok: bool = True) -> Path:
    """The folder holding all Fashion-MNIST files. An explicit `data_dir` is the only place looked at (its
    absence is an error naming what is missing); without one: $PRUNEKIT_DATA, the system copy, the user
    cache, then a download into the cache."""
    if data_dir is not None:
        return _explicit(data_dir)
    places = search_places(data_dir)
    for place in places:
        if _complete(place.path):
            return place.path
    reason = "download disabled"
    if download_ok and os.environ.get("PRUNEKIT_NO_DOWNLOAD", "") in ("", "0"):
        try:
            return download(cache_dir())
        except (urllib.error.URLError, OSError, DataFormatError) as e:
            reason = f"download from {URL} failed: {e}"
    lines = "\n".join(f"  - {p.path}  ({p.label})" for p in places)
    raise DataNotFoundError(
        "Fashion-MNIST not found. Searched, in order:\n" + lines + f"\n  - {URL}  ({reason})\n"
        "Files needed (gzipped or raw): " + ", ".join(s for pair in FILES.values() for s in pair) + ".\n"
        "Pass --data-dir, set $PRUNEKIT_DATA, install Debian's dataset-fashion-mnist, "
        "or use --dataset digits (always available).")


@functools.lru_cache(maxsize=4)
def _load_folder(folder: str, split: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Load once per (folder, split, file times): `stamp` makes a rewritten file load again."""
    img_stem, lbl_stem = FILES[split]
    path = Path(folder)
    images = read_idx(_find_file(path, img_stem), ndim=3)
    labels = read_idx(_find_file(path, lbl_stem), ndim=1)
    if images.dtype != torch.uint8 or labels.dtype != torch.uint8:
        raise DataFormatError(f"{folder}: {split} files must hold uint8 data")
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(f"{folder}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) >= len(CLASSES):
        raise DataFormatError(f"{folder}: label {int(labels.max())} out of range 0..{len(CLASSES) - 1}")
    return images.unsqueeze(1).contiguous(), labels.long()


def load(split: str, data_dir: str | Path | None = None,
         download_ok: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 1, 28, 28] and int64 labels [N] of the "train" or "test" file pair."""
    folder = locate(data_dir, download_ok).resolve()
    stamp = tuple(_find_file(folder, s).stat().st_mtime_ns for s in FILES[split])
    return _load_folder(str(folder), split, stamp)
