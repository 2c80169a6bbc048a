"""Structural copies of a model: on the meta device (shapes only) or sharing the model's tensors.

Tracing, probing and the final plan check run a model many times without needing its numbers; these copies
let them do so without memory for weights, without arithmetic, and without touching the caller's model.
"""
from __future__ import annotations

import collections
import copy
from typing import Any

import torch
from torch import nn


def empty_dicts(model: nn.Module) -> dict[int, Any]:
    """A deepcopy memo giving each empty dict / OrderedDict a module holds (its hook tables, mostly) a new
    empty one of the same type, as deepcopy would, without deepcopy's generic path for each (that was 60%
    of copying a ResNet-50's structure)."""
    memo: dict[int, Any] = {}
    for mod in model.modules():
        for v in vars(mod).values():
            if type(v) in (dict, collections.OrderedDict) and not v:
                memo[id(v)] = type(v)()
    return memo


def meta_copy(model: nn.Module, keep_integer: bool = False) -> nn.Module:
    """A structural copy of `model` whose parameters and buffers live on the meta device (no memory).

    keep_integer: integer and bool buffers (index tables such as a relative-position index) stay real,
    shared with `model`, so that code indexing with them can still be followed value by value.
    """
    memo = empty_dicts(model)
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in memo:
            continue
        if keep_integer and not isinstance(t, nn.Parameter) and not (t.is_floating_point() or t.is_complex()):
            memo[id(t)] = t
            continue
        m = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    return copy.deepcopy(model, memo)


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of the module structure that shares every parameter and buffer with `model`.

    Surgery replaces tensors instead of writing into them, so pruning this copy leaves `model` untouched.
    """
    memo = empty_dicts(model)
    memo.update({id(t): t for t in list(model.parameters()) + list(model.buffers())})
    return copy.deepcopy(model, memo)


def to_meta(obj: Any) -> Any:
    """`obj` (inputs: a tensor, or containers of them) with every tensor replaced by a meta tensor."""
    return torch.utils._pytree.tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, obj)
