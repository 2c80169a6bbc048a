"""One-shot (score, prune once, fine-tune) and iterative (rank, prune a step, fine-tune a little, repeat)."""
from __future__ import annotations

import time
from typing import Any, Iterable

from torch import nn

from ..policies.base import Target
from ..surgery import apply
from .common import (PlanComposer, as_target, cost, default_inputs, no_extra, plan_step, prune_once_and_recover,
                     recover, score, shrink_graph, split_options, step_target, summary, teacher_of, trace_model,
                     train)


def oneshot(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
            *, target: Target | dict | None = None, ratio: float | None = None, criterion: str = "l1",
            policy: str = "uniform", criterion_kw: dict | None = None, policy_kw: dict | None = None,
            score_batches: int = 8, min_channels: int = 1, max_ratio: float = 0.9,
            **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Score every channel once with `criterion`, allocate with `policy` for `target` (or `ratio`), remove
    the channels, then recover (fine-tune, distil or train from scratch: see Recovery). Modifies `model`."""
    opts, rest = split_options(kw)
    no_extra("oneshot", rest)
    target = as_target(target, ratio)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    history: dict[str, Any] = {}
    teacher = teacher_of(model, opts)
    ex = default_inputs(train_loader, example_inputs)
    t0 = time.perf_counter()
    graph = trace_model(model, ex, opts)
    base = cost(graph)
    timings["trace"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score(model, graph, criterion, train_loader, score_batches, opts.seed, criterion_kw)
    timings["score"] = time.perf_counter() - t0
    return prune_once_and_recover("oneshot", model, graph, base, scores, train_loader, val_loader, ex, opts, teacher,
                                  timings, history, t_start, criterion=criterion, policy=policy, target=target,
                                  ratio=ratio, min_channels=min_channels, max_ratio=max_ratio, policy_kw=policy_kw)


def srr(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
        *, criterion: str = "l1", policy: str = "srr", **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Structural Redundancy Reduction (arXiv 2104.03438) as a procedure: allocate with the `srr` policy (take
    from the most redundant group), remove each group's smallest-L1 filters, fine-tune once."""
    model, report = oneshot(model, train_loader, val_loader, example_inputs, criterion=criterion, policy=policy,
                            **kw)
    report["method"] = "srr"
    report["plan"].meta["method"] = "srr"
    return model, report


def iterative(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
              *, target: Target | dict | None = None, ratio: float | None = None, criterion: str = "l1",
              policy: str = "uniform", steps: int = 4, step_epochs: int = 1, step_max_steps: int | None = None,
              criterion_kw: dict | None = None, policy_kw: dict | None = None, score_batches: int = 8,
              min_channels: int = 1, max_ratio: float = 0.9, **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The classic loop, `steps` times: rank with `criterion` (a separate pass over data for data-driven ones),
    prune toward the step's share of the target, fine-tune `step_epochs` (at most `step_max_steps` optimizer
    steps per epoch); then the final recovery. Cumulative MAC/param fractions fall linearly over the steps."""
    opts, rest = split_options(kw)
    no_extra("iterative", rest)
    target = as_target(target, ratio)
    if steps < 1:
        raise ValueError("steps must be >= 1")
    t_start = time.perf_counter()
    timings = {"score": 0.0, "prune": 0.0, "step_finetune": 0.0}
    history: dict[str, Any] = {"steps": []}
    teacher = teacher_of(model, opts)
    ex = default_inputs(train_loader, example_inputs)
    graph = trace_model(model, ex, opts)
    base = cost(graph)
    sizes = {g.name: g.size for g in graph.groups}
    composer = PlanComposer(graph)
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        scores = score(model, graph, criterion, train_loader, score_batches, opts.seed + i, criterion_kw)
        timings["score"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        st, sr = step_target(base, cost(graph), target, ratio, i, steps)
        plan = plan_step(model, graph, scores, policy, st, sr, min_channels, max_ratio, policy_kw, sizes,
                         data=train_loader, example_inputs=ex, seed=opts.seed + i)
        apply(model, plan)
        graph = shrink_graph(graph, plan, model)
        composer.update(plan)
        timings["prune"] += time.perf_counter() - t0
        now = cost(graph)
        row = {"step": i, "macs_kept": now["macs"] / base["macs"], "params_kept": now["params"] / base["params"]}
        if i < steps:
            t0 = time.perf_counter()
            over = {"max_steps_per_epoch": step_max_steps} if step_max_steps else {}
            hist, _ = train(model, train_loader, None, opts.config(step_epochs, opts.lr, schedule="constant", **over),
                            opts)
            row["train_loss"] = hist[-1]["train_loss"] if hist else None
            timings["step_finetune"] += time.perf_counter() - t0
        history["steps"].append(row)
    recover(model, teacher, train_loader, val_loader, opts, timings, history)
    timings["total"] = time.perf_counter() - t_start
    meta = {"method": "iterative", "criterion": criterion, "policy": policy, "ratio": ratio,
            "target": target.items() if target else None, "steps": steps}
    return model, summary("iterative", base, graph, composer.plan(meta), timings, history, criterion=criterion,
                          policy=policy, steps=steps)
