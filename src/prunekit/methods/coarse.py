"""Coarse ranking (arXiv 1902.06385): rank from the fine-tuning steps themselves, no separate ranking pass.

Hooks on the groups' activation sites accumulate the criterion (taylor by default; apoz, mean_activation)
from the activations and gradients each training step computes anyway. Every `every` steps, the lowest-ranked
channels are removed (surgery in place, optimizer state sliced along) and the accumulators start afresh.
The graph is traced once before training and then renumbered after each prune (no forward pass), so the only
forward passes are the Trainer's (and its validation). The report holds the total time and the time spent
ranking (hooks + scoring + allocation), the part a separate ranking pass would replace.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from torch import nn

from ..criteria.activations import ActivationRecorder
from ..policies.base import Target
from ..surgery import apply
from ..train import DistillationLoss
from .common import (PlanComposer, as_target, cost, default_inputs, no_extra, plan_step, recover, shrink_graph,
                     split_options, step_target, summary, teacher_of, trace_model, train)

COARSE_CRITERIA = ("taylor", "apoz", "mean_activation")


def coarse(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
           *, target: Target | dict | None = None, ratio: float | None = None, criterion: str = "taylor",
           policy: str = "uniform", every: int = 20, prunes: int | None = None, relu: bool = True,
           policy_kw: dict | None = None, min_channels: int = 1, max_ratio: float = 0.9,
           **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune for `finetune_epochs`, pruning every `every` optimizer steps (`prunes` times; default: as many
    as fit in the first half of training, at most 10), each prune moving the cumulative MACs/params (or the
    channel ratio) linearly toward the target. The rest of training recovers. With from_scratch=True the pruned
    architecture is then re-initialised and trained (the ranking still comes from the fine-tuning steps)."""
    opts, rest = split_options(kw)
    no_extra("coarse", rest)
    if criterion not in COARSE_CRITERIA:
        raise ValueError(f"coarse ranking accumulates {COARSE_CRITERIA}, not {criterion!r}")
    target = as_target(target, ratio)
    t_start = time.perf_counter()
    teacher = teacher_of(model, opts)
    ex = default_inputs(train_loader, example_inputs)
    t0 = time.perf_counter()
    graph = trace_model(model, ex, opts)
    base = cost(graph)
    timings: dict[str, float] = {"trace": time.perf_counter() - t0}
    history: dict[str, Any] = {"prunes": []}
    sizes = {g.name: g.size for g in graph.groups}
    cfg = opts.config(opts.finetune_epochs, opts.lr)
    steps_per_epoch = _steps_per_epoch(train_loader, cfg.max_steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    n_prunes = prunes if prunes is not None else max(1, min(10, (total // 2) // max(1, every)))
    if n_prunes * every > total:
        raise ValueError(f"{n_prunes} prunes every {every} steps need {n_prunes * every} training steps; "
                         f"finetune_epochs={cfg.epochs} give {total}")
    state = {"graph": graph, "done": 0, "rank_s": 0.0, "prune_s": 0.0, "forward": 0, "steps": 0}
    composer = PlanComposer(graph)
    recorder = ActivationRecorder(model, graph, (criterion,), relu=relu)

    def count_forward(module, args):
        state["forward"] += 1

    def on_step(trainer, step: int) -> None:
        state["steps"] = step
        if step % every or state["done"] >= n_prunes:
            return
        t1 = time.perf_counter()
        g = state["graph"]
        scores = recorder.scores(criterion)
        i = state["done"] + 1
        st, sr = step_target(base, cost(g), target, ratio, i, n_prunes)
        plan = plan_step(trainer.module, g, scores, policy, st, sr, min_channels, max_ratio, policy_kw, sizes,
                         seed=opts.seed + i)
        t2 = time.perf_counter()
        state["rank_s"] += t2 - t1
        apply(trainer.module, plan, optimizer=trainer.optimizer)
        if trainer.model is not trainer.module:  # DDP wraps the old parameters
            trainer.rebuild_optimizer()
        composer.update(plan)
        state["graph"] = shrink_graph(g, plan, trainer.module)
        recorder.rebind(state["graph"])
        state["done"] = i
        state["prune_s"] += time.perf_counter() - t2
        now = cost(state["graph"])
        history["prunes"].append({"step": step, "macs_kept": now["macs"] / base["macs"],
                                  "params_kept": now["params"] / base["params"]})

    handle = model.register_forward_pre_hook(count_forward)
    t0 = time.perf_counter()
    try:
        with recorder:
            terms = [DistillationLoss(teacher, opts.temperature, opts.distill_weight)] \
                if teacher is not None and not opts.from_scratch else []
            history["finetune"], _ = train(model, train_loader, val_loader, cfg, opts, loss_terms=terms,
                                           step_callbacks=[on_step])
    finally:
        handle.remove()
    timings["finetune"] = time.perf_counter() - t0
    hook_s = recorder.time_s
    timings["ranking"] = hook_s + state["rank_s"]
    timings["prune"] = state["prune_s"]
    if opts.from_scratch:
        recover(model, teacher, train_loader, val_loader, opts, timings, history)
    timings["total"] = time.perf_counter() - t_start
    meta = {"method": "coarse", "criterion": criterion, "policy": policy, "ratio": ratio,
            "target": target.items() if target else None, "every": every, "prunes": n_prunes}
    return model, summary("coarse", base, state["graph"], composer.plan(meta), timings, history,
                          criterion=criterion, policy=policy, prunes=state["done"], every=every,
                          training_steps=state["steps"], forward_calls=state["forward"],
                          ranking_share=timings["ranking"] / max(1e-9, timings["total"]))


def _steps_per_epoch(loader: Iterable, cap: int | None) -> int:
    n = len(loader)  # type: ignore[arg-type]
    return max(1, min(n, cap) if cap else n)
