"""Soft (channel-mask) pruning on the same groups and plans as physical removal.

`mask_channels(model, plan)` zeroes, through a parametrization that stays in force during training, every
parameter slice that `pk.apply(model, plan)` would remove; `make_permanent` later removes the masks and
applies the plan for real. Masked channels produce exact zeros, so a masked model computes what the pruned
model computes (up to the normalisation caveats `pk.verify` reports).
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph.plan import PruningPlan
from .apply import apply
from .checks import check_plan_fits
from .masks import apply_masks, remove_masks


def plan_masks(model: nn.Module, plan: PruningPlan) -> dict[str, torch.Tensor]:
    """Boolean keep-masks (True = keep) for every parameter the plan slices."""
    params = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    for key, dim, idx in plan.removals():
        if key not in params:
            continue  # buffers (BN running stats) need no mask: gamma and beta are masked
        m = masks.setdefault(key, torch.ones_like(params[key], dtype=torch.bool))
        index = torch.tensor(idx, dtype=torch.long, device=m.device)
        m.index_fill_(dim, index, False)
    return masks


def mask_channels(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """Keep the plan's removed channels at zero through training (in place). The plan must fit the model
    (the checks `apply` runs), so no wrong channel is masked."""
    plan = check_plan_fits(model, plan)
    return apply_masks(model, plan_masks(model, plan))


def make_permanent(model: nn.Module, plan: PruningPlan, optimizer=None) -> nn.Module:
    """Drop the channel masks and physically remove the masked channels."""
    remove_masks(model, make_permanent=True)
    return apply(model, plan, optimizer=optimizer)
