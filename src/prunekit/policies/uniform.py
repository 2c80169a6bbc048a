"""Uniform allocation: the same ratio in every group."""
from __future__ import annotations

from ..config import NoOptions
from .base import Allocation, bisect_knob, clamp_counts, register_policy, target_fraction


@register_policy("uniform", NoOptions)
def uniform(model, graph, scores, alloc: Allocation, config: NoOptions) -> dict[str, int]:
    """Remove round(ratio * size) channels from each prunable group; with a target, search the ratio, then give
    channels back one at a time (least pruned fraction first) while the target still holds, so the result is
    within one channel per group of both the common ratio and the target."""

    target, min_channels, max_ratio = alloc.target, alloc.min_channels, alloc.max_ratio

    def counts(r: float):
        return clamp_counts(graph, {g.name: int(round(r * g.size)) for g in graph.prunable_groups()},
                            min_channels, max_ratio)

    if target is None:
        return counts(float(alloc.ratio or 0.0))
    best = bisect_knob(graph, counts, target, 0.0, max_ratio)
    if target_fraction(graph, best, target) > 1.0 + 1e-9:
        return best
    sizes = {g.name: g.size for g in graph.prunable_groups()}
    for name in sorted(best, key=lambda n: (best[n] / sizes[n], n), reverse=True):
        trial = clamp_counts(graph, {**best, name: best[name] - 1}, min_channels, max_ratio)
        if trial.get(name, 0) < best[name] and target_fraction(graph, trial, target) <= 1.0 + 1e-9:
            best = trial
    return best
