"""One-shot (score, prune once, fine-tune), SRR as a procedure, and iterative (rank, prune a step, fine-tune a
little, repeat)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from torch import nn

from ..config import check_int
from ..planning import plan_from_scores, score_channels
from ..surgery import apply
from .common import (PlanComposer, begin, check_final, cost, finish, plan_meta, plan_name, policy_name,
                     prune_once_and_recover, recover, shrink_graph, step_target, train)
from .config import MethodConfig
from .registry import register_method
from .result import MethodResult


@dataclass
class OneshotConfig(MethodConfig):
    """oneshot: score once with the plan's criterion (reading `score_batches` batches when it needs data),
    allocate with its policy, remove, recover."""

    METHOD: ClassVar[str] = "oneshot"
    score_batches: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(type(self).__name__, "score_batches", self.score_batches, lo=1)


@dataclass
class SRRMethodConfig(OneshotConfig):
    """srr: oneshot with the `srr` policy (take from the most redundant group) and the l1 criterion."""

    METHOD: ClassVar[str] = "srr"
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {"criterion": "l1", "policy": "srr"}


@dataclass
class IterativeConfig(MethodConfig):
    """iterative: `steps` prunes, each followed (but the last) by `step_epochs` of fine-tuning capped at
    `step_max_steps` optimizer steps per epoch; the criterion is re-read before every step."""

    METHOD: ClassVar[str] = "iterative"
    steps: int = 4
    step_epochs: int = 1
    step_max_steps: int | None = None
    score_batches: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        w = type(self).__name__
        check_int(w, "steps", self.steps, lo=1)
        check_int(w, "step_epochs", self.step_epochs, lo=0)
        check_int(w, "step_max_steps", self.step_max_steps, lo=1, optional=True)
        check_int(w, "score_batches", self.score_batches, lo=1)


def _oneshot(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, example_inputs: Any,
             cfg: OneshotConfig) -> MethodResult:
    run = begin(model, train_loader, example_inputs, cfg)
    t0 = time.perf_counter()
    scores = score_channels(model, run.graph, cfg.plan, train_loader, cfg.score_batches)
    run.timings["score"] = time.perf_counter() - t0
    return prune_once_and_recover(model, run, scores, train_loader, val_loader)


@register_method("oneshot", OneshotConfig)
def oneshot(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
            config: OneshotConfig | None = None, **options: Any) -> MethodResult:
    """Score every channel once, allocate for the target (or ratio), remove the channels, then recover.

    Args:
        model: the model, pruned in place.
        train_loader: batches for data-driven criteria and for recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: an OneshotConfig; or its fields as keywords: the PlanConfig ones (target, ratio, criterion,
            policy, min_channels, ...), the Recovery ones (finetune_epochs, lr, distill, ...) and
            score_batches. An unknown keyword raises TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = oneshot(...)` unpacks it).

    Example:
        >>> model, res = oneshot(net, loader, target=pk.Target(macs=0.5), criterion="l1", finetune_epochs=1)
        >>> res.macs_kept <= 0.5
        True
    """
    return _oneshot(model, train_loader, val_loader, example_inputs,
                    OneshotConfig.resolve("oneshot()", config, options))


@register_method("srr", SRRMethodConfig)
def srr(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
        config: SRRMethodConfig | None = None, **options: Any) -> MethodResult:
    """Structural Redundancy Reduction (arXiv 2104.03438) as a procedure: allocate with the `srr` policy (take
    from the most redundant group), remove each group's smallest-L1 filters, fine-tune once.

    Args:
        model: the model, pruned in place.
        train_loader: batches for the SRR graph statistics and recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: an SRRMethodConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, score_batches). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = srr(...)` unpacks it).

    Example:
        >>> model, res = srr(net, loader, target=pk.Target(macs=0.5), finetune_epochs=1)
        >>> res.method
        'srr'
    """
    return _oneshot(model, train_loader, val_loader, example_inputs,
                    SRRMethodConfig.resolve("srr()", config, options))


@register_method("iterative", IterativeConfig)
def iterative(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
              config: IterativeConfig | None = None, **options: Any) -> MethodResult:
    """The classic loop, `steps` times: rank with the criterion (a separate pass over data for data-driven
    ones), prune toward the step's share of the target, fine-tune `step_epochs`; then the final recovery.
    Cumulative MAC/param fractions fall linearly over the steps.

    Args:
        model: the model, pruned in place.
        train_loader: batches for scoring, the per-step fine-tuning and recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: an IterativeConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, steps, step_epochs, score_batches). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = iterative(...)` unpacks it).

    Example:
        >>> model, res = iterative(net, loader, target=pk.Target(macs=0.5), steps=3, step_epochs=1)
        >>> len(res.history["steps"])
        3
    """
    cfg = IterativeConfig.resolve("iterative()", config, options)
    run = begin(model, train_loader, example_inputs, cfg)
    run.timings.update({"score": 0.0, "prune": 0.0, "step_finetune": 0.0})
    run.history["steps"] = []
    graph, opts, p = run.graph, cfg.recovery, cfg.plan
    sizes = {g.name: g.size for g in graph.groups}
    composer = PlanComposer(graph)
    for i in range(1, cfg.steps + 1):
        st, sr = step_target(run.base, cost(graph), p.target, p.ratio, i, cfg.steps)
        step_cfg = p.replace(target=st, ratio=sr, seed=p.seed + i)
        t0 = time.perf_counter()
        scores = score_channels(model, graph, step_cfg, train_loader, cfg.score_batches)
        run.timings["score"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = plan_from_scores(model, graph, scores, step_cfg, data=train_loader, example_inputs=run.example_inputs,
                                original_sizes=sizes, enforce=False)
        apply(model, plan)
        graph = shrink_graph(graph, plan, model)
        composer.update(plan)
        run.timings["prune"] += time.perf_counter() - t0
        now = cost(graph)
        row = {"step": i, "macs_kept": now["macs"] / run.base["macs"],
               "params_kept": now["params"] / run.base["params"]}
        if i < cfg.steps:
            t0 = time.perf_counter()
            over = {"max_steps_per_epoch": cfg.step_max_steps} if cfg.step_max_steps else {}
            hist, _ = train(model, train_loader, None, opts.config(cfg.step_epochs, opts.lr, schedule="constant",
                                                                   **over), opts)
            row["train_loss"] = hist[-1]["train_loss"] if hist else None
            run.timings["step_finetune"] += time.perf_counter() - t0
        run.history["steps"].append(row)
    check_final(run, graph)
    run.record(recover(model, run.teacher, train_loader, val_loader, opts))
    extras = {"criterion": plan_name(p.criterion), "policy": policy_name(p.policy), "steps": cfg.steps}
    return finish(model, run, graph, composer.plan(plan_meta(cfg, extras)), extras)
