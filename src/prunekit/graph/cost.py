"""Predict parameters and MACs of a pruned model from per-group removal counts, without surgery.

MACs of a convolution or linear layer are linear in its weight's element count, so tracing records MACs per
weight element; the pruned count is the kept elements times that rate. Attention matmuls without a weight
operand are kept as they are (a slight over-estimate).
"""
from __future__ import annotations

from .groups import DependencyGraph


def kept_shapes(graph: DependencyGraph, removed: dict[str, int | list[int]]) -> dict[str, list[float]]:
    """Expected shape of every tensor after removing `removed[group]` channels (a count or the indices)."""
    shapes = {k: [float(s) for s in v] for k, v in graph.shapes.items()}
    for g in graph.groups:
        r = removed.get(g.name)
        if not r:
            continue
        for m in g.members:
            if isinstance(r, int):
                per = sum(len(ix) for ix in m.index) / max(1, g.size)
                shapes[m.key][m.dim] -= per * r
            else:
                shapes[m.key][m.dim] -= len(m.positions(r))
    return shapes


def _numel(shape) -> float:
    n = 1.0
    for s in shape:
        n *= max(0.0, s)
    return n


def predict(graph: DependencyGraph, removed: dict[str, int | list[int]] | None = None) -> dict[str, float]:
    """{'params': ..., 'macs': ...} of the model after the removals (parameters only, not buffers)."""
    removed = removed or {}
    shapes = kept_shapes(graph, removed)
    params = sum(_numel(shapes[k]) for k in (graph.param_keys or list(shapes)) if k in shapes)
    macs = graph.macs_other + sum(rate * _numel(shapes[k]) for k, rate in graph.macs_by_key.items() if k in shapes)
    return {"params": params, "macs": macs}
