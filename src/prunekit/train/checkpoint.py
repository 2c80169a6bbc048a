"""Atomic checkpoint files and the random-number state that makes a resumed run continue identically."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

FORMAT = "prunekit-train-checkpoint"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    A reader (or a crash) never sees a half-written checkpoint: the old file stays until the new one is whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a trainer checkpoint (tensors and plain Python values only: ``weights_only=True``)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a prunekit training checkpoint")
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
