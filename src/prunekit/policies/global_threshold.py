"""Global allocation: one threshold over every group's normalised scores."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import Config, check_choice
from .base import Allocation, allocate_sequence, normalize_scores, register_policy, room

NORMALIZATIONS = ("mean", "max", "l2", "sum", "none")


@dataclass
class GlobalConfig(Config):
    """Policy `global`: how each group's scores are scaled before one threshold compares them (`none` compares
    them as they are, as Network Slimming does with BatchNorm scales)."""

    normalize: str = "mean"

    def __post_init__(self) -> None:
        check_choice("GlobalConfig", "normalize", self.normalize, NORMALIZATIONS)


def global_order(graph, scores, min_channels: int = 1, max_ratio: float = 0.9, normalize: str = "mean") -> list[str]:
    """Group names of the candidate channels in ascending order of normalised score, skipping channels of
    groups that reached their guard (min_channels, max_ratio)."""
    vals, owners = [], []
    names = [g.name for g in graph.prunable_groups()]
    for i, g in enumerate(graph.prunable_groups()):
        if not g.candidates:
            continue
        s = normalize_scores(scores[g.name], normalize)
        cand = torch.tensor(g.candidates, dtype=torch.long)
        vals.append(s[cand])
        owners.append(torch.full((len(cand),), i, dtype=torch.long))
    if not vals:
        return []
    v, o = torch.cat(vals), torch.cat(owners)
    left = room(graph, min_channels, max_ratio)
    seq = []
    for i in o[torch.argsort(v, stable=True)].tolist():
        if left[names[i]] > 0:
            left[names[i]] -= 1
            seq.append(names[i])
    return seq


@register_policy("global", GlobalConfig)
def global_threshold(model, graph, scores, alloc: Allocation, config: GlobalConfig) -> dict[str, int]:
    """Remove every channel whose normalised score (score / its group's mean, or max, l2, sum, none) lies below
    one threshold, the threshold chosen to meet `target` or to remove `ratio` of all channels."""
    seq = global_order(graph, scores, alloc.min_channels, alloc.max_ratio, config.normalize)
    return allocate_sequence(graph, seq, alloc.ratio, alloc.target, alloc.min_channels, alloc.max_ratio)
