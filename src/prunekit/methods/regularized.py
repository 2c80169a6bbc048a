"""Sparsity-regularised pruning: train with a penalty that drives whole channels toward zero, prune the ones
it found, fine-tune. Network Slimming (L1 on BatchNorm scales, then `bn_scale`, Liu et al. 2017) and group
lasso (L2 norm per channel group, then the `l2` group norm; see also Mitsuno et al. 2020)."""
from __future__ import annotations

import time
from typing import Any, Iterable

from torch import nn

from ..policies.base import Target
from ..train import as_loss_term, bn_l1
from ..train import group_lasso as group_lasso_penalty
from .common import (as_target, cost, default_inputs, no_extra, prune_once_and_recover, score, split_options,
                     teacher_of, trace_model, train)


def _regularized(name: str, penalty, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None,
                 example_inputs: Any, target, ratio, criterion: str, policy: str, strength: float,
                 sparsity_epochs: int, sparsity_lr: float | None, policy_kw: dict | None, min_channels: int,
                 max_ratio: float, kw: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    opts, rest = split_options(kw)
    no_extra(name, rest)
    target = as_target(target, ratio)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    history: dict[str, Any] = {}
    teacher = teacher_of(model, opts)
    ex = default_inputs(train_loader, example_inputs)
    graph = trace_model(model, ex, opts)
    base = cost(graph)
    t0 = time.perf_counter()
    term = penalty(graph, strength)
    cfg = opts.config(sparsity_epochs, sparsity_lr if sparsity_lr is not None else opts.lr)
    history["sparsity"], _ = train(model, train_loader, val_loader, cfg, opts, loss_terms=[term])
    timings["sparsity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score(model, graph, criterion, train_loader, seed=opts.seed)
    timings["score"] = time.perf_counter() - t0
    return prune_once_and_recover(name, model, graph, base, scores, train_loader, val_loader, ex, opts, teacher,
                                  timings, history, t_start, criterion=criterion, policy=policy, target=target,
                                  ratio=ratio, min_channels=min_channels, max_ratio=max_ratio, policy_kw=policy_kw,
                                  strength=strength)


def slimming(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
             *, target: Target | dict | None = None, ratio: float | None = None, strength: float = 1e-4,
             sparsity_epochs: int = 1, sparsity_lr: float | None = None, criterion: str = "bn_scale",
             policy: str = "global", policy_kw: dict | None = None, min_channels: int = 1, max_ratio: float = 0.9,
             **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Network Slimming: `sparsity_epochs` of training with `strength` * sum |gamma|, then prune by |gamma| with
    one global threshold (policy "global", gammas compared as they are), then recover."""
    policy_kw = {"normalize": "none", **(policy_kw or {})} if policy == "global" else policy_kw
    return _regularized("slimming", lambda graph, s: as_loss_term(bn_l1, s), model, train_loader, val_loader,
                        example_inputs, target, ratio, criterion, policy, strength, sparsity_epochs, sparsity_lr,
                        policy_kw, min_channels, max_ratio, kw)


def group_lasso(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                example_inputs: Any = None, *, target: Target | dict | None = None, ratio: float | None = None,
                strength: float = 1e-4, sparsity_epochs: int = 1, sparsity_lr: float | None = None,
                criterion: str = "l2", policy: str = "global", policy_kw: dict | None = None, min_channels: int = 1,
                max_ratio: float = 0.9, **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Group lasso: `sparsity_epochs` of training with `strength` * sum over channels of the L2 norm of the
    channel's slices in every coupled tensor of its group, then prune by `criterion`, then recover."""

    def penalty(graph, s):
        return as_loss_term(group_lasso_penalty, s, groups=graph.prunable_groups())

    return _regularized("group_lasso", penalty, model, train_loader, val_loader, example_inputs, target, ratio,
                        criterion, policy, strength, sparsity_epochs, sparsity_lr, policy_kw, min_channels,
                        max_ratio, kw)
