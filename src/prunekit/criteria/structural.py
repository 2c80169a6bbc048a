"""Data-free criteria beyond plain norms: bn_scale (Network Slimming) and fpgm (geometric median)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_choice, check_int
from .base import Criterion, CriterionConfig, member_rows, per_channel, producer_weights, register_criterion


@dataclass
class BNScaleConfig(CriterionConfig):
    """bn_scale: `fallback` scores groups without an affine BatchNorm ("l1"), or None makes them an error."""

    fallback: str | None = "l1"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("BNScaleConfig", "fallback", self.fallback, ("l1", None))


@dataclass
class FPGMConfig(CriterionConfig):
    """fpgm: Weiszfeld iterations of the geometric median."""

    iters: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("FPGMConfig", "iters", self.iters, lo=1)


@register_criterion("bn_scale")
class BNScale(Criterion):
    """Liu et al. 2017: |gamma| of the BatchNorm layers of the group, summed over them.

    A group without an affine BatchNorm falls back to the L1 norm of its producer filters scaled to the same
    mean as the BatchNorm groups (say so with `fallback=None` to get an error instead)."""

    Config = BNScaleConfig

    def score(self, model, graph, data):
        mods = dict(model.named_modules())
        sd = model.state_dict(keep_vars=True)
        scores, missing = {}, []
        for g in graph.prunable_groups():
            total, found = torch.zeros(g.size), False
            for m in g.members:
                mod = mods.get(m.module)
                if m.role == "norm" and isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.affine \
                        and m.key == f"{m.module}.weight":
                    total += per_channel(m, sd[m.key].detach().abs().float().cpu())
                    found = True
            if found:
                scores[g.name] = total
            else:
                missing.append(g)
        if missing:
            if self.config.fallback is None or not scores:
                raise ValueError(f"bn_scale: group(s) {[g.name for g in missing][:5]} have no affine BatchNorm")
            ref = torch.cat(list(scores.values())).mean()
            for g in missing:
                total = torch.zeros(g.size)
                for m, w in producer_weights(model, graph, g):
                    total += per_channel(m, member_rows(w, m).abs().sum(1).cpu())
                scores[g.name] = total * ref / total.mean().clamp(min=1e-12)
        return scores


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-8) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of x."""
    y = x.mean(0)
    for _ in range(iters):
        d = (x - y).norm(dim=1).clamp(min=eps)
        w = 1.0 / d
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - y).norm() <= eps * (1 + y.norm()):
            return new
        y = new
    return y


@register_criterion("fpgm")
class FPGM(Criterion):
    """He et al. 2019: distance of each filter to the geometric median of its layer's filters (near the median
    = replaceable by the others = low score), summed over the group's producer layers."""

    Config = FPGMConfig

    def score(self, model, graph, data):
        scores = {}
        for g in graph.prunable_groups():
            total = torch.zeros(g.size)
            for m, w in producer_weights(model, graph, g):
                rows = member_rows(w, m).cpu()
                gm = geometric_median(rows, iters=self.config.iters)
                dist = (rows - gm).norm(dim=1)
                total += per_channel(m, dist)
            scores[g.name] = total
        return scores
