"""Writers of tiny data files in the real on-disk formats, for the data tests."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian sizes, data."""
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_fmnist(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0,
                 learnable: bool = False):
    """Tiny Fashion-MNIST files; returns the arrays written. learnable: dim noise in which the class lights up
    one row (row 2 * label + 4), so that a model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    high = 60 if learnable else 256
    arrays = {
        FILES[0]: rng.integers(0, high, (n_train, 28, 28), dtype=np.uint8),
        FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, high, (n_test, 28, 28), dtype=np.uint8),
        FILES[3]: (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    if learnable:
        for images, labels in ((arrays[FILES[0]], arrays[FILES[1]]), (arrays[FILES[2]], arrays[FILES[3]])):
            images[np.arange(len(labels)), labels.astype(np.int64) * 2 + 4] = 255
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def write_cifar(folder: Path, per_batch: int = 6, n_test: int = 5) -> dict[str, tuple[np.ndarray, list]]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        d = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, n)], b"filenames": [b"x.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
        written[name] = (d[b"data"], d[b"labels"])
    return written


def write_tree(root: Path, classes: dict[str, int], size=(10, 12), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for c, n in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
