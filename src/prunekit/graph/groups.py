"""Channel groups: the result of tracing, what criteria score and policies allocate over."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .shrink import shrink


@dataclass
class Member:
    """One tensor dimension touched by a channel group; index[c] = positions of group channel c."""

    key: str
    dim: int
    index: list[list[int]]
    module: str
    role: str  # "out" | "in" | "norm" | "other"

    def positions(self, channels) -> list[int]:
        index = self.index
        return sorted([i for c in channels for i in index[c]])


@dataclass
class ChannelGroup:
    """Channels that must be removed together (a conv's filters, its BN, the next conv's inputs, ...)."""

    name: str
    size: int
    members: list[Member]
    prunable: bool
    reason: str = ""
    candidates: list[int] = field(default_factory=list)  # channels that may be removed
    notes: list[str] = field(default_factory=list)  # why zeroing is not exactly equivalent, if any
    round_to: int = 1
    roots: list[int] = field(default_factory=list)  # union-find root of each channel (split views use it)

    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role == "out" and not _is_bias(m)]

    def member(self, key: str, dim: int | None = None) -> Member | None:
        for m in self.members:
            if m.key == key and (dim is None or m.dim == dim):
                return m
        return None

    @property
    def exact(self) -> bool:
        return not self.notes

    def __repr__(self) -> str:
        state = "prunable" if self.prunable else f"fixed: {self.reason}"
        return f"ChannelGroup({self.name!r}, size={self.size}, members={len(self.members)}, {state})"


def _is_bias(m: Member) -> bool:
    return m.key.endswith("bias") and m.dim == 0


@dataclass
class DependencyGraph:
    """The traced model: its channel groups plus what attribute patching needs later."""

    model: nn.Module
    groups: list[ChannelGroup]
    splits: list[dict] = field(default_factory=list)  # views that split a dim: module, inner size, roots
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    example_inputs: object = None
    macs_by_key: dict[str, float] = field(default_factory=dict)  # MACs per element of each weight
    macs_other: float = 0.0  # MACs not attributable to a weight (attention matmuls)
    param_keys: list[str] = field(default_factory=list)  # state_dict keys of the parameters (counted once)
    root_of: dict[int, tuple[str, int]] = field(default_factory=dict)  # union-find root -> (group, channel)
    output_shapes: list | None = None  # shapes of the traced forward's output tensors (None: not known)
    traced_on: str = "model"  # "meta": the labelled forward ran on a meta copy (shapes only); "model": on it

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no channel group named {name!r}; groups: {[g.name for g in self.groups][:20]}")

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def split_root_arrays(self) -> list[np.ndarray]:
        """Each split's roots as an int64 array (cached while the split lists are the same objects)."""
        lists = [s["roots"] for s in self.splits]
        sizes = [len(r) for r in lists]
        cached = self.__dict__.get("_split_arrays")
        # the cache holds the lists it was made from, so identity (not a reusable id) tells it is current
        if cached is None or cached[1] != sizes or any(a is not b for a, b in zip(cached[0], lists)):
            cached = (lists, sizes, [np.asarray(r, dtype=np.int64) for r in lists])
            self.__dict__["_split_arrays"] = cached
        return cached[2]

    def param_tensor(self, key: str) -> torch.Tensor:
        sd = self.model.state_dict(keep_vars=True)
        return sd[key]

    def after(self, plan, model: nn.Module | None = None) -> "DependencyGraph":
        """The graph of the model once `plan` is applied, derived without a new forward pass.

        Group names stay; channels and tensor positions are renumbered to the kept ones. Pass the pruned
        `model` so that criteria read its tensors (default: the graph's model). Graphs with reshapes other
        than plain splits are traced again on `model`.
        """
        return shrink(self, plan, model)

    def summary(self) -> str:
        lines = [f"{len(self.groups)} channel groups, {len(self.prunable_groups())} prunable"]
        for g in self.groups:
            lines.append(f"  {g.name:40s} size={g.size:5d} members={len(g.members):3d} "
                         f"{'prunable' if g.prunable else 'fixed (' + g.reason + ')'}")
        return "\n".join(lines)
