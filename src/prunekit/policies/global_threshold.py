"""Global allocation: one threshold over every group's normalised scores."""
from __future__ import annotations

import torch

from .base import Target, allocate_sequence, normalize_scores, register_policy, room


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


@register_policy("global")
def global_threshold(model, graph, scores, ratio: float | None = None, target: Target | None = None,
                     min_channels: int = 1, max_ratio: float = 0.9, normalize: str = "mean", **_):
    """Remove every channel whose normalised score (score / its group's mean, or max, l2, sum, none) lies below
    one threshold, the threshold chosen to meet `target` or to remove `ratio` of all channels."""
    seq = global_order(graph, scores, min_channels, max_ratio, normalize)
    return allocate_sequence(graph, seq, ratio, target, min_channels, max_ratio)
