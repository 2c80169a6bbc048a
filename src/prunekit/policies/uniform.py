"""Uniform allocation: the same ratio in every group."""
from __future__ import annotations

from .base import Target, bisect_knob, clamp_counts, register_policy


@register_policy("uniform")
def uniform(model, graph, scores, ratio: float | None = None, target: Target | None = None, min_channels: int = 1,
            max_ratio: float = 0.9, **_):
    """Remove round(ratio * size) channels from each prunable group; with a target, search the ratio."""

    def counts(r: float):
        return clamp_counts(graph, {g.name: int(round(r * g.size)) for g in graph.prunable_groups()},
                            min_channels, max_ratio)

    if target is not None:
        return bisect_knob(graph, counts, target, 0.0, max_ratio)
    return counts(float(ratio or 0.0))
