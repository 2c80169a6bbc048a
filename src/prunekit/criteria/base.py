"""Criterion registry and helpers shared by criteria."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..graph.groups import ChannelGroup, DependencyGraph, Member

CRITERIA: dict[str, type] = {}


class Criterion:
    """Scores channels of every prunable group. Subclasses set `needs_data` when they read a loader."""

    name = "base"
    needs_data = False

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __call__(self, model: nn.Module, graph: DependencyGraph, data=None) -> dict[str, torch.Tensor]:
        if self.needs_data and data is None:
            raise ValueError(f"criterion {self.name!r} needs data: pass data=<DataLoader or list of batches>")
        return self.score(model, graph, data)

    def score(self, model, graph, data) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def register_criterion(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        CRITERIA[name] = cls
        return cls

    return deco


def list_criteria() -> list[str]:
    return sorted(CRITERIA)


def get_criterion(name: str | Criterion, **kwargs: Any) -> Criterion:
    if isinstance(name, Criterion):
        return name
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; choose one of: {', '.join(list_criteria())}")
    return CRITERIA[name](**kwargs)


def member_rows(t: torch.Tensor, m: Member) -> torch.Tensor:
    """t reshaped to [size of m.dim, -1]: one row per position along the member's dim."""
    return t.detach().movedim(m.dim, 0).reshape(t.shape[m.dim], -1).float()


def per_channel(m: Member, per_position: torch.Tensor) -> torch.Tensor:
    """Sum a per-position value over the positions of each group channel."""
    lengths = torch.tensor([len(p) for p in m.index], dtype=torch.long)
    flat = torch.tensor([i for p in m.index for i in p], dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(m.index)), lengths)
    out = torch.zeros(len(m.index), dtype=per_position.dtype)
    return out.index_add_(0, owner, per_position[flat])


def producer_weights(model: nn.Module, graph: DependencyGraph, g: ChannelGroup) -> list[tuple[Member, torch.Tensor]]:
    sd = model.state_dict(keep_vars=True)
    return [(m, sd[m.key]) for m in g.producers() if m.key in sd]
