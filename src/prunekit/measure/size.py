"""Serialized size: bytes of a model's safetensors file, computed in memory, and sizes of files on disk."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn


def unique_state_dict(model_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict with tied tensors kept once and every tensor contiguous on CPU with its own storage."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple] = set()
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        ident = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))
        if t.numel() > 0 and ident in seen:
            continue
        seen.add(ident)
        out[key] = t.detach().to("cpu").contiguous().clone()
    return out


def serialized_size(model: nn.Module | dict[str, torch.Tensor]) -> int:
    """Bytes of the safetensors serialization of the model's state dict (tied weights stored once)."""
    return len(save(unique_state_dict(model)))


def file_size(path: str | os.PathLike) -> int:
    """Size in bytes of a file, or of every file under a directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
