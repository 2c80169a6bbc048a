"""Statistical redundancy study (arXiv 1905.06498): a layer's width is its redundancy.

Channels are taken one at a time from the currently widest group (ties: the group listed first), until the
target is met. Pair it with the `random` criterion to reproduce the study (which channels go matters less
than how many each layer keeps)."""
from __future__ import annotations

from typing import Iterator

from ..config import NoOptions
from .base import Allocation, allocate_sequence, register_policy, room


def widest_first(graph, min_channels: int = 1, max_ratio: float = 0.9) -> Iterator[str]:
    groups = graph.prunable_groups()
    width = {g.name: g.size for g in groups}
    left = room(graph, min_channels, max_ratio)
    order = {g.name: i for i, g in enumerate(groups)}
    while True:
        open_ = [n for n in width if left[n] > 0]
        if not open_:
            return
        name = max(open_, key=lambda n: (width[n], -order[n]))
        width[name] -= 1
        left[name] -= 1
        yield name


@register_policy("width", NoOptions)
def width(model, graph, scores, alloc: Allocation, config: NoOptions) -> dict[str, int]:
    """Take channels from the currently widest group until `target` is met (or `ratio` of all channels)."""
    a = alloc
    return allocate_sequence(graph, widest_first(graph, a.min_channels, a.max_ratio), a.ratio, a.target,
                             a.min_channels, a.max_ratio)
