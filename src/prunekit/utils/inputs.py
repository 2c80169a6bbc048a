"""Calling a model on example inputs: the one convention every part of prunekit uses.

Example inputs are a tensor (one positional argument), a tuple or list (positional arguments) or a dict
(keyword arguments). A model's outputs may be any nesting of tuples, lists, dicts and dataclass-like
containers that ``torch.utils._pytree`` understands; ``output_tensors`` flattens them.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils import _pytree

Inputs = Any  # a tensor, a tuple/list of tensors (positional) or a dict (keyword arguments)


def as_call(inputs: Inputs) -> tuple[tuple, dict]:
    """The ``(args, kwargs)`` with which a model is called on ``inputs``."""
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """Run ``model`` on ``inputs``: a dict becomes keyword arguments, a tuple/list positional ones.

    Args:
        model: any callable module.
        inputs: a tensor, a tuple/list of positional arguments or a dict of keyword arguments.

    Returns:
        Whatever the model returns.

    Example:
        >>> call_model(nn.Linear(3, 2), torch.zeros(1, 3)).shape
        torch.Size([1, 2])
    """
    args, kwargs = as_call(inputs)
    return model(*args, **kwargs)


def output_tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor inside ``obj`` (nested tuples, lists, dicts, registered containers), in pytree order."""
    flat, _ = _pytree.tree_flatten(obj)
    return [t for t in flat if isinstance(t, torch.Tensor)]


__all__ = ["Inputs", "as_call", "call_model", "output_tensors"]
