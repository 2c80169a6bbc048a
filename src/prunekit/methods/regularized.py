"""Sparsity-regularised pruning: train with a penalty that drives whole channels toward zero, prune the ones
it found, fine-tune. Network Slimming (L1 on BatchNorm scales, then `bn_scale`, Liu et al. 2017) and group
lasso (L2 norm per channel group, then the `l2` group norm; see also Mitsuno et al. 2020)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

from torch import nn

from ..config import check_float, check_int
from ..planning import score_channels
from ..train import as_loss_term, bn_l1
from ..train import group_lasso as group_lasso_penalty
from .common import begin, prune_once_and_recover, train
from .config import MethodConfig
from .registry import register_method
from .result import MethodResult


@dataclass
class RegularizedConfig(MethodConfig):
    """`sparsity_epochs` of training with `strength` x the penalty (at `sparsity_lr`, default the recovery
    lr), then one prune with the plan's criterion and policy, then recovery."""

    strength: float = 1e-4
    sparsity_epochs: int = 1
    sparsity_lr: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        w = type(self).__name__
        check_float(w, "strength", self.strength, 0.0, None)
        check_int(w, "sparsity_epochs", self.sparsity_epochs, lo=0)
        check_float(w, "sparsity_lr", self.sparsity_lr, 0.0, None, lo_open=True, optional=True)


@dataclass
class SlimmingConfig(RegularizedConfig):
    """slimming: L1 on BatchNorm scales, pruned by |gamma| with one global threshold over raw gammas."""

    METHOD: ClassVar[str] = "slimming"
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {"criterion": "bn_scale", "policy": "global",
                                               "policy_kwargs": {"normalize": "none"}}


@dataclass
class GroupLassoConfig(RegularizedConfig):
    """group_lasso: the L2 norm of every channel's slices in its group's tensors, pruned by the l2 norm."""

    METHOD: ClassVar[str] = "group_lasso"
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {"criterion": "l2", "policy": "global"}


def _regularized(penalty: Callable, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None,
                 example_inputs: Any, cfg: RegularizedConfig) -> MethodResult:
    run = begin(model, train_loader, example_inputs, cfg)
    opts = cfg.recovery
    t0 = time.perf_counter()
    term = penalty(run.graph, cfg.strength)
    tcfg = opts.config(cfg.sparsity_epochs, cfg.sparsity_lr if cfg.sparsity_lr is not None else opts.lr)
    run.history["sparsity"], _ = train(model, train_loader, val_loader, tcfg, opts, loss_terms=[term])
    run.timings["sparsity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_channels(model, run.graph, cfg.plan, train_loader)
    run.timings["score"] = time.perf_counter() - t0
    return prune_once_and_recover(model, run, scores, train_loader, val_loader, {"strength": cfg.strength})


def _options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword options where a policy other than the default drops the default's policy options."""
    if "policy" in options and options["policy"] != cls.PLAN_DEFAULTS["policy"]:
        options.setdefault("policy_kwargs", {})
    return options


@register_method("slimming", SlimmingConfig)
def slimming(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
             config: SlimmingConfig | None = None, **options: Any) -> MethodResult:
    """Network Slimming: `sparsity_epochs` of training with `strength` * sum |gamma|, then prune by |gamma| with
    one global threshold (policy "global", gammas compared as they are), then recover.

    Args:
        model: the model, pruned in place.
        train_loader: batches for the sparsity training and recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: a SlimmingConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, sparsity_epochs, strength). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = slimming(...)` unpacks it).

    Example:
        >>> model, res = slimming(net, loader, ratio=0.5, sparsity_epochs=2, strength=1e-4)
        >>> res.method
        'slimming'
    """
    cfg = SlimmingConfig.resolve("slimming()", config, _options(SlimmingConfig, options))
    return _regularized(lambda graph, s: as_loss_term(bn_l1, s), model, train_loader, val_loader, example_inputs,
                        cfg)


@register_method("group_lasso", GroupLassoConfig)
def group_lasso(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                example_inputs: Any = None, config: GroupLassoConfig | None = None,
                **options: Any) -> MethodResult:
    """Group lasso: `sparsity_epochs` of training with `strength` * sum over channels of the L2 norm of the
    channel's slices in every coupled tensor of its group, then prune by the criterion, then recover.

    Args:
        model: the model, pruned in place.
        train_loader: batches for the sparsity training and recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: a GroupLassoConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, sparsity_epochs, strength). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = group_lasso(...)` unpacks it).

    Example:
        >>> model, res = group_lasso(net, loader, target=pk.Target(macs=0.5), sparsity_epochs=2)
        >>> res.macs_kept <= 0.5
        True
    """
    cfg = GroupLassoConfig.resolve("group_lasso()", config, options)

    def penalty(graph, s):
        return as_loss_term(group_lasso_penalty, s, groups=graph.prunable_groups())

    return _regularized(penalty, model, train_loader, val_loader, example_inputs, cfg)
