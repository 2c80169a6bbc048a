"""Checkpoint files (atomic, checksummed) and the random-number state that makes a resumed run continue
identically.

A checkpoint is a ``torch.save`` of a dict, read back with ``weights_only=True`` (no code runs on load).
Every dict written here carries ``"sha256"``: the digest of all its other entries (tensors by dtype, shape
and bytes); :func:`load_checkpoint` recomputes it, so a flipped byte or a truncated file raises
:class:`ModelFileError` naming the file instead of resuming from damaged weights.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import ModelFileError
from ..utils.checksum import object_digest
from ..utils.fileio import atomic_write

FORMAT = "prunekit-train-checkpoint"
CHECKSUM_KEY = "sha256"


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """``torch.save`` through the one atomic writer (``prunekit.utils.fileio.atomic_write``).

    A dict gets a ``"sha256"`` entry over its other entries, which :func:`load_checkpoint` and
    :func:`read_checked` verify. A reader (or a crash) never sees a half-written checkpoint.
    """
    if isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: None}
        obj[CHECKSUM_KEY] = object_digest({k: v for k, v in obj.items() if k != CHECKSUM_KEY})
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), overwrite=overwrite)


def read_checked(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A dict written by :func:`atomic_torch_save`, its checksum verified and removed.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a torch file, truncated, corrupted, not a dict, or without a checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many error types for damaged zip/pickle data
        raise ModelFileError(f"{path} is not a readable checkpoint: corrupt or truncated "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} is not a prunekit checkpoint (it holds a {type(state).__name__}, not a dict)")
    stored = state.pop(CHECKSUM_KEY, None)
    if not isinstance(stored, str):
        raise ModelFileError(f"{path} has no checksum: written by another tool or before prunekit stored checksums")
    if object_digest(state) != stored:
        raise ModelFileError(f"{path}: checksum mismatch, the checkpoint is corrupted")
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a trainer checkpoint (tensors and plain Python values only: ``weights_only=True``), verified."""
    state = read_checked(path, map_location)
    if state.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a prunekit training checkpoint (format {state.get('format')!r})")
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
