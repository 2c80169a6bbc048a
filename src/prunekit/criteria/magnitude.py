"""Weight-magnitude criteria (Li et al., ICLR 2017) and the seeded random baseline."""
from __future__ import annotations

import torch

from .base import Criterion, member_rows, per_channel, producer_weights, register_criterion


class _Norm(Criterion):
    p = 1

    def score(self, model, graph, data):
        scores = {}
        for g in graph.prunable_groups():
            total = torch.zeros(g.size)
            for m, w in producer_weights(model, graph, g):
                rows = member_rows(w, m)
                val = rows.abs().sum(1) if self.p == 1 else rows.pow(2).sum(1)
                total += per_channel(m, val)
            scores[g.name] = total if self.p == 1 else total.sqrt()
        return scores


@register_criterion("l1")
class L1(_Norm):
    """Sum over the group's producer filters of the L1 norm of channel c's filter."""

    p = 1


@register_criterion("l2")
class L2(_Norm):
    """L2 norm of channel c's filters, concatenated over the group's producers."""

    p = 2


@register_criterion("random")
class Random(Criterion):
    """Uniform random scores from a seeded generator (baseline)."""

    def score(self, model, graph, data):
        gen = torch.Generator().manual_seed(self.config.seed)
        return {g.name: torch.rand(g.size, generator=gen) for g in graph.prunable_groups()}
