"""Probe each group by pruning one channel of it in a shape-only (meta) copy and running the forward.

Some couplings are invisible to a trace: code that computes a width from another tensor's size
(``qkv.reshape(B, N, 3, heads, C // heads)`` with C taken from the block input) ties the counts of two
groups. Such a group fails alone; the probe marks it not prunable and says why, instead of letting a plan
build a model that crashes.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .groups import DependencyGraph


def meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of `model` whose parameters and buffers live on the meta device (no memory)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in memo:
            continue
        m = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    return copy.deepcopy(model, memo)


def _to_meta(obj):
    return torch.utils._pytree.tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, obj)


def probe_groups(model: nn.Module, graph: DependencyGraph, example_inputs: Any) -> int:
    """Mark groups whose single-channel removal breaks the forward; returns how many were marked."""
    from ..surgery.apply import apply
    from .plan import PruningPlan
    from .trace import _tensors, run_model

    inputs = _to_meta(example_inputs)
    try:
        with torch.no_grad():
            ref = [t.shape for t in _tensors(run_model(meta_copy(model).eval(), inputs))]
    except Exception:  # the model cannot run on meta tensors (data-dependent ops): keep the trace's verdict
        return 0
    marked = 0
    for g in graph.prunable_groups():
        n = max(1, g.round_to)
        if len(g.candidates) < n or g.size - n < 1:
            continue
        drop = set(g.candidates[:n])
        plan = PruningPlan.from_kept(graph, {g.name: [c for c in range(g.size) if c not in drop]})
        m = meta_copy(model).eval()
        try:
            apply(m, plan)
            with torch.no_grad():
                shapes = [t.shape for t in _tensors(run_model(m, inputs))]
            if shapes != ref:
                raise RuntimeError(f"output shapes change: {ref} -> {shapes}")
        except Exception as e:  # noqa: BLE001 - any failure means the group cannot be pruned alone
            g.prunable = False
            msg = str(e).splitlines()[0][:160]
            g.reason = f"removing a channel breaks the forward ({type(e).__name__}: {msg})"
            marked += 1
    return marked
