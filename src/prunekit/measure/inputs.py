"""Helpers shared by the measurement functions: moving, resizing and locating example inputs.

Calling a model on inputs is ``prunekit.utils.inputs.call_model``; it and ``Inputs`` are imported here so
that measurement code finds every input helper in one module.
"""
from __future__ import annotations

import torch
from torch import nn

from ..utils.inputs import Inputs, call_model


def map_tensors(inputs: Inputs, fn) -> Inputs:
    """Apply ``fn`` to every tensor inside ``inputs`` (tensor, tuple, list or dict, nested)."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, dict):
        return {k: map_tensors(v, fn) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_tensors(v, fn) for v in inputs)
    return inputs


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    """Move every tensor in ``inputs`` to ``device``."""
    return map_tensors(inputs, lambda t: t.to(device))


def batch_size_of(inputs: Inputs) -> int | None:
    """Size of dimension 0 of the first tensor found in ``inputs`` (None when there is no tensor)."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() > 0 else None
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else []
    for v in values:
        b = batch_size_of(v)
        if b is not None:
            return b
    return None


def rebatch(inputs: Inputs, batch_size: int) -> Inputs:
    """Resize dimension 0 of every batched tensor to ``batch_size`` (slicing, or repeating the samples)."""
    current = batch_size_of(inputs)
    if current is None or current == batch_size:
        return inputs

    def fix(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != current:
            return t
        if batch_size <= current:
            return t[:batch_size].clone()
        reps = -(-batch_size // current)
        return t.repeat(reps, *([1] * (t.dim() - 1)))[:batch_size].clone()

    return map_tensors(inputs, fix)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without tensors)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


__all__ = ["Inputs", "batch_size_of", "call_model", "map_tensors", "model_device", "rebatch", "to_device"]
