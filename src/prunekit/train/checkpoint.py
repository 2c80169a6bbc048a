"""Checkpoint files (atomic, checksummed) and the random-number state that makes a resumed run continue
identically.

A checkpoint is a ``torch.save`` zip archive, read back with ``weights_only=True`` (no code runs on load).
Its zip comment, the last 64 bytes of the file, is the hex SHA-256 of every byte before it; readers here
check it before torch parses anything, so a flipped byte anywhere or a truncated file raises
:class:`ModelFileError` naming the file. ``torch.load`` still reads the file as usual (zip comments are
part of the format).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import ModelFileError, pickled_globals
from ..utils.fileio import atomic_write

FORMAT = "prunekit-train-checkpoint"
_EOCD = b"PK\x05\x06"        # zip end-of-central-directory signature; the record is 22 bytes + comment
_EOCD_SIZE = 22
_DIGEST_HEX = 64


def _file_sha256(path: Path, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _seal(path: Path) -> None:
    """Turn the zip torch.save wrote into one whose 64-byte comment is the SHA-256 of all bytes before it."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - _EOCD_SIZE)
        eocd = f.read(_EOCD_SIZE)
        if eocd[:4] != _EOCD or eocd[-2:] != b"\0\0":
            raise RuntimeError(f"torch.save wrote an archive prunekit cannot seal ({path})")
        f.seek(size - 2)
        f.write(struct.pack("<H", _DIGEST_HEX))
    digest = _file_sha256(path, size)
    with open(path, "ab") as f:
        f.write(digest.encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """``torch.save`` through the one atomic writer (``prunekit.utils.fileio.atomic_write``), sealed with a
    SHA-256 that :func:`read_checked` and :func:`load_checkpoint` verify. A reader (or a crash) never sees a
    half-written checkpoint."""
    def write(tmp: Path) -> None:
        torch.save(obj, tmp)
        _seal(tmp)

    return atomic_write(path, write, overwrite=overwrite)


def _check_seal(path: Path) -> None:
    size = path.stat().st_size
    tail_len = _EOCD_SIZE + _DIGEST_HEX
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(0, size - tail_len))
        tail = f.read(tail_len)
    if size < tail_len or tail[:4] != _EOCD or tail[20:22] != struct.pack("<H", _DIGEST_HEX):
        if head == b"PK\x03\x04" and tail[-_EOCD_SIZE:][:4] == _EOCD:
            raise ModelFileError(f"{path} has no prunekit checksum: written by another tool or before prunekit "
                                 "sealed its checkpoints")
        raise ModelFileError(f"{path} is not a readable checkpoint: corrupt or truncated ({size} bytes, no intact "
                             "end record)")
    stored = tail[_EOCD_SIZE:]
    if _file_sha256(path, size - _DIGEST_HEX).encode() != stored:
        raise ModelFileError(f"{path}: checksum mismatch, the checkpoint is corrupted")


def read_checked(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """The object in a file written by :func:`atomic_torch_save`, after its checksum is verified.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a sealed torch file, truncated, corrupted, or unreadable by torch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    _check_seal(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a Python object: say which, never how to allow it
        raise ModelFileError(f"{path} holds pickled Python objects{pickled_globals(e)}, not only tensors and plain "
                             "values; prunekit does not load them, since unpickling can run code") from None
    except Exception as e:  # noqa: BLE001 - torch raises many error types for unexpected content
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise ModelFileError(f"{path} is not a readable checkpoint ({type(e).__name__}: {first})") from e


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a trainer checkpoint (tensors and plain Python values only: ``weights_only=True``), verified."""
    state = read_checked(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a prunekit training checkpoint")
    return state


def capture_rng(generators: Iterable[torch.Generator] = ()) -> dict[str, Any]:
    """State of python, numpy, torch (CPU, CUDA) and the given generators (e.g. a loader's shuffling one)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": [g.get_state() for g in generators],
    }


def restore_rng(state: dict[str, Any], generators: Iterable[torch.Generator] = ()) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for g, s in zip(generators, state.get("generators", [])):
        g.set_state(s.cpu())
