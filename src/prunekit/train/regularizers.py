"""Sparsity regularisers that push whole channels towards zero before structured pruning.

Each returns a scalar tensor to add to the loss: ``trainer.add_loss_term(as_loss_term(bn_l1, 1e-4))``.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


def _sum(terms: Iterable[torch.Tensor], like: nn.Module) -> torch.Tensor:
    total = None
    for t in terms:
        total = t if total is None else total + t
    if total is None:
        p = next(like.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else "cpu")
    return total


def bn_l1(model: nn.Module, strength: float) -> torch.Tensor:
    """Network Slimming: ``strength`` * sum of |gamma| over every affine BatchNorm layer."""
    gammas = (m.weight.abs().sum() for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None)
    return strength * _sum(gammas, model)


def _filter_norms(weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """L2 norm of each output filter (dim 0, or dim 1 for a transposed convolution)."""
    w = weight.transpose(0, 1) if transposed else weight
    return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)


def _channel_group_norms(params: dict[str, torch.Tensor], group: Any) -> torch.Tensor:
    """Per channel of a graph ``ChannelGroup``: L2 norm over its slices in every member parameter."""
    per_channel: list[list[torch.Tensor]] = [[] for _ in range(group.size)]
    for m in group.members:
        p = params.get(m.key)
        if p is None:  # buffers (running stats) are not regularised
            continue
        moved = p.movedim(m.dim, 0)
        for c, idx in enumerate(m.index):
            per_channel[c].append(moved[idx].reshape(-1))
    return torch.stack([torch.linalg.vector_norm(torch.cat(parts)) for parts in per_channel if parts])


def group_lasso(model: nn.Module, strength: float, groups: Iterable[Any] | None = None) -> torch.Tensor:
    """Group lasso: ``strength`` * sum of the L2 norms of each output filter.

    ``groups=None`` takes every Conv/Linear weight, one group per output filter. ``groups`` may instead list
    modules (their filters) or channel groups from ``prunekit.graph`` (objects with ``.members``), in which
    case a channel's group spans its slices in every coupled parameter (conv, BN, next layer's input).
    """
    params = dict(model.named_parameters())
    items = list(groups) if groups is not None else [
        m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    norms = []
    for g in items:
        if hasattr(g, "members"):
            norms.append(_channel_group_norms(params, g).sum())
        elif isinstance(g, nn.Module):
            transposed = isinstance(g, nn.modules.conv._ConvTransposeNd)
            norms.append(_filter_norms(g.weight, transposed).sum())
        else:
            raise TypeError(f"group_lasso: cannot use group of type {type(g).__name__}")
    return strength * _sum(norms, model)
