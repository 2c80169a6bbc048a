"""CIFAR-10 in its python-batch format (data_batch_1..5, test_batch, batches.meta), read with an
unpickler that only rebuilds numpy arrays."""
from __future__ import annotations

import functools
import io
import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from .base import DataFormatError, DataNotFoundError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SUBDIR = "cifar-10-batches-py"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except what numpy arrays need."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataFormatError(f"{path}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DataFormatError(f"{path}: expected a dict with b'data' and b'labels', found {keys}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFormatError(f"{path}: b'data' must be uint8 [N, 3072], found {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],):
        raise DataFormatError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataFormatError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def locate(data_dir: str | Path | None) -> Path:
    """The folder holding test_batch: data_dir (only it, when given) or else $PRUNEKIT_DATA, or their
    cifar-10-batches-py/."""
    roots = [Path(data_dir)] if data_dir else [Path(p) for p in (os.environ.get("PRUNEKIT_DATA"),) if p]
    places = [p for r in roots for p in (r, r / SUBDIR)]
    for p in places:
        if (p / "test_batch").is_file():
            return p
    searched = "\n".join(f"  - {p}" for p in places) or "  (nothing: no data_dir and no $PRUNEKIT_DATA)"
    raise DataNotFoundError("CIFAR-10 python batches (data_batch_1..5, test_batch) not found. Searched:\n"
                            f"{searched}\nPass --data-dir pointing at the extracted {SUBDIR} folder.")


def _batch_files(folder: Path, split: str) -> list[Path]:
    if split == "test":
        return [folder / "test_batch"]
    files = [p for p in folder.iterdir() if re.fullmatch(r"data_batch_\d+", p.name)]
    if not files:
        raise DataNotFoundError(f"{folder}: no data_batch_N files for the CIFAR-10 training split")
    return sorted(files, key=lambda p: int(p.name.rsplit("_", 1)[1]))


@functools.lru_cache(maxsize=2)
def _load(folder: str, split: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_batch(p) for p in _batch_files(Path(folder), split)]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).contiguous()
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels


def load(split: str, data_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 3, 32, 32] and int64 labels [N] of the "train" or "test" batches."""
    folder = locate(data_dir).resolve()
    stamp = tuple(p.stat().st_mtime_ns for p in _batch_files(folder, split))
    return _load(str(folder), split, stamp)
