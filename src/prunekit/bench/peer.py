"""torch-pruning (the `bench` extra) as a peer: its group-norm pruner (DepGraph, MetaPruner with
GroupNormImportance, named GroupMagnitudeImportance(p=2) in torch-pruning >= 1.5) brought to the same MAC target
by a search over its pruning ratio; fine-tuning is prunekit's, with the shared budget."""
from __future__ import annotations

import copy
import importlib.util
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, Callable

import torch
from torch import nn

from ..measure import count_macs


def available() -> bool:
    return importlib.util.find_spec("torch_pruning") is not None


def version() -> str | None:
    if not available():
        return None
    try:
        return package_version("torch-pruning")
    except PackageNotFoundError:
        return None


def _importance():
    import torch_pruning as tp
    imp = getattr(tp.importance, "GroupNormImportance", None)
    return imp(p=2) if imp is not None else tp.importance.GroupMagnitudeImportance(p=2)


def _classifier(model: nn.Module) -> list[nn.Module]:
    last = None
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            last = m
    return [last] if last is not None else []


def _macs(model: nn.Module, example: torch.Tensor) -> int:
    return int(count_macs(model, example))


def prune_to_macs(model: nn.Module, example: torch.Tensor, target: float, global_pruning: bool = True,
                  iterations: int = 12, max_pruning_ratio: float = 0.9, importance: Any = None,
                  setup: Callable[[nn.Module], dict[str, Any]] | None = None,
                  finish: Callable[[nn.Module], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned copy of `model` keeping at most `target` of its MACs (counted by prunekit), found by bisection
    on MetaPruner's pruning_ratio. Global ranking by default: with per-layer (uniform) ratios the narrow layers
    of small CIFAR-style nets round the MACs in steps of 5-10 points, far from the target. At most
    `max_pruning_ratio` of a layer goes (prunekit's max_ratio guard); the classifier is left whole. `importance`:
    a torch-pruning importance object (default: group-norm, p=2). `setup(copy)`: more MetaPruner keywords for
    the copy being pruned (e.g. channel_groups of its attention layers); `finish(copy)`: fixes after the step
    (e.g. an attribute torch-pruning does not update)."""
    import torch_pruning as tp
    base = _macs(model, example)
    imp = importance if importance is not None else _importance()

    def attempt(ratio: float) -> tuple[nn.Module, float]:
        m = copy.deepcopy(model).eval()
        pruner = tp.pruner.MetaPruner(m, example, importance=imp, pruning_ratio=ratio,
                                      global_pruning=global_pruning, max_pruning_ratio=max_pruning_ratio,
                                      ignored_layers=_classifier(m), **(setup(m) if setup else {}))
        pruner.step()
        if finish:
            finish(m)
        return m, _macs(m, example) / base

    lo, hi = 0.0, 0.95
    best = None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        m, kept = attempt(mid)
        if kept <= target:
            best, hi = (m, kept, mid), mid
        else:
            lo = mid
    if best is None:
        m, kept = attempt(hi)
        best = (m, kept, hi)
    m, kept, ratio = best
    return m, {"pruning_ratio": ratio, "macs_kept": kept, "importance": type(imp).__name__,
               "global_pruning": global_pruning, "torch_pruning": version()}
