"""Criterion registry and helpers shared by criteria."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..config import Config, check_int
from ..graph.groups import ChannelGroup, DependencyGraph, Member
from ..registry import Registry

CRITERIA: Registry = Registry("criterion")


@dataclass
class CriterionConfig(Config):
    """Options every criterion takes: `seed` seeds the generator of criteria that draw random numbers."""

    seed: int = 0

    def __post_init__(self) -> None:
        check_int(type(self).__name__, "seed", self.seed)


@dataclass
class DataCriterionConfig(CriterionConfig):
    """Criteria that read data: how many batches of it (a DataLoader, a list of batches or one pair)."""

    batches: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(type(self).__name__, "batches", self.batches, lo=1)


class Criterion:
    """Scores channels of every prunable group. Subclasses set `needs_data` when they read a loader and
    `Config` to the dataclass of their options; `Criterion(config)` or `Criterion(**options)` (an unknown
    option raises TypeError naming it and the valid ones)."""

    name = "base"
    needs_data = False
    Config: ClassVar[type] = CriterionConfig

    def __init__(self, config: Any = None, **options: Any) -> None:
        where = f"criterion {self.name!r}"
        if config is None:
            config = self.Config.from_kwargs(where, options)
        elif options:
            raise TypeError(f"{where}: give config= or keyword options, not both ({sorted(options)})")
        elif isinstance(config, dict):
            config = self.Config.from_dict(config)
        elif not isinstance(config, self.Config):
            raise TypeError(f"{where} is configured by {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    def __call__(self, model: nn.Module, graph: DependencyGraph, data=None) -> dict[str, torch.Tensor]:
        if self.needs_data and data is None:
            raise ValueError(f"criterion {self.name!r} needs data: pass data=<DataLoader or list of batches>")
        return self.score(model, graph, data)

    def score(self, model, graph, data) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def register_criterion(name: str) -> Callable[[type], type]:
    """Register a Criterion subclass as `name` (configured by its `Config` dataclass)."""

    def deco(cls: type) -> type:
        cls.name = name
        CRITERIA.register(name, cls, config=cls.Config)
        return cls

    return deco


def list_criteria() -> list[str]:
    """Names of the registered channel criteria, sorted."""
    return CRITERIA.names()


def get_criterion(name: str | Criterion, config: Any = None, **options: Any) -> Criterion:
    """An instance of criterion `name` with `config` or keyword `options` (an instance passes through).

    Args:
        name: a registered criterion ("l1", "l2", "bn", "taylor", "fpgm", ...; `list_criteria()`), or a
            Criterion instance, returned as it is.
        config: the criterion's config (`criterion_options(name)` lists its fields), or None.
        **options: those fields as keywords; an unknown one raises TypeError listing the valid ones.

    Returns:
        A Criterion: `criterion(model, graph, data=None) -> {group name: per-channel scores}` (higher = keep).

    Example:
        >>> scores = get_criterion("l1")(model, pk.trace(model, x))
        >>> sorted(scores) == sorted(g.name for g in pk.trace(model, x).prunable_groups())
        True
    """
    if isinstance(name, Criterion):
        if config is not None or options:
            raise TypeError(f"criterion {name.name!r} is already built; options {sorted(options)} would be ignored")
        return name
    return CRITERIA.entry(name).obj(config, **options)


def criterion_options(name: str | Criterion) -> list[str]:
    """The option names criterion `name` accepts."""
    cls = type(name) if isinstance(name, Criterion) else CRITERIA.entry(name).obj
    return cls.Config.field_names()


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
