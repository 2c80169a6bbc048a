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
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from torch import nn

from ..config import check_bool, check_int
from ..criteria.activations import ActivationRecorder
from ..planning import plan_from_scores
from ..surgery import apply
from ..train import DistillationLoss
from .common import (PlanComposer, begin, check_final, cost, finish, plan_meta, plan_name, policy_name, recover,
                     shrink_graph, step_target, train)
from .config import MethodConfig
from .registry import register_method
from .result import MethodResult

COARSE_CRITERIA = ("taylor", "apoz", "mean_activation")


@dataclass
class CoarseConfig(MethodConfig):
    """coarse: prune every `every` optimizer steps, `prunes` times (None: as many as fit in the first half of
    training, at most 10); `relu` applies ReLU before apoz / mean_activation. The criterion is one the hooks
    accumulate (taylor, apoz, mean_activation)."""

    METHOD: ClassVar[str] = "coarse"
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {"criterion": "taylor"}
    every: int = 20
    prunes: int | None = None
    relu: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        w = "CoarseConfig"
        if self.plan.criterion not in COARSE_CRITERIA:
            raise ValueError(f"coarse ranking accumulates {COARSE_CRITERIA}, not {self.plan.criterion!r}")
        check_int(w, "every", self.every, lo=1)
        check_int(w, "prunes", self.prunes, lo=1, optional=True)
        check_bool(w, "relu", self.relu)


@register_method("coarse", CoarseConfig)
def coarse(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
           config: CoarseConfig | None = None, **options: Any) -> MethodResult:
    """Fine-tune for `finetune_epochs`, pruning every `every` optimizer steps (`prunes` times), each prune moving
    the cumulative MACs/params (or the channel ratio) linearly toward the target. The rest of training
    recovers. With from_scratch=True the pruned architecture is then re-initialised and trained (the ranking
    still comes from the fine-tuning steps).

    Args:
        model: the model, pruned in place.
        train_loader: batches for the fine-tuning during which it prunes.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: a CoarseConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, every, prunes, relu, from_scratch). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = coarse(...)` unpacks it).

    Example:
        >>> model, res = coarse(net, loader, target=pk.Target(macs=0.5), finetune_epochs=2, every=20)
        >>> res.macs_kept <= 0.5
        True
    """
    cfg = CoarseConfig.resolve("coarse()", config, options)
    run = begin(model, train_loader, example_inputs, cfg)
    opts, p, criterion = cfg.recovery, cfg.plan, cfg.plan.criterion
    base, graph, timings, history = run.base, run.graph, run.timings, run.history
    history["prunes"] = []
    sizes = {g.name: g.size for g in graph.groups}
    tcfg = opts.config(opts.finetune_epochs, opts.lr)
    total = tcfg.epochs * _steps_per_epoch(train_loader, tcfg.max_steps_per_epoch)
    every = cfg.every
    n_prunes = cfg.prunes if cfg.prunes is not None else max(1, min(10, (total // 2) // every))
    if n_prunes * every > total:
        raise ValueError(f"{n_prunes} prunes every {every} steps need {n_prunes * every} training steps; "
                         f"finetune_epochs={tcfg.epochs} give {total}")
    state = {"graph": graph, "done": 0, "rank_s": 0.0, "prune_s": 0.0, "forward": 0, "steps": 0}
    composer = PlanComposer(graph)
    recorder = ActivationRecorder(model, graph, (criterion,), relu=cfg.relu)

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
        st, sr = step_target(base, cost(g), p.target, p.ratio, i, n_prunes)
        # no example inputs: the plan is not test-run on a copy, which would be a forward pass outside the
        # training steps; the next training step runs the pruned model
        plan = plan_from_scores(trainer.module, g, scores, p.replace(target=st, ratio=sr, seed=p.seed + i),
                                original_sizes=sizes, enforce=False)
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
            terms = [DistillationLoss(run.teacher, opts.temperature, opts.distill_weight)] \
                if run.teacher is not None and not opts.from_scratch else []
            history["finetune"], _ = train(model, train_loader, val_loader, tcfg, opts, loss_terms=terms,
                                           step_callbacks=[on_step])
    finally:
        handle.remove()
    timings["finetune"] = time.perf_counter() - t0
    timings["ranking"] = recorder.time_s + state["rank_s"]
    timings["prune"] = state["prune_s"]
    check_final(run, state["graph"])
    if opts.from_scratch:
        run.record(recover(model, run.teacher, train_loader, val_loader, opts))
    total_s = time.perf_counter() - run.t_start
    extras = {"criterion": plan_name(criterion), "policy": policy_name(p.policy), "prunes": state["done"],
              "every": every, "training_steps": state["steps"], "forward_calls": state["forward"],
              "ranking_share": timings["ranking"] / max(1e-9, total_s)}
    return finish(model, run, state["graph"], composer.plan(plan_meta(cfg, extras)), extras)


def _steps_per_epoch(loader: Iterable, cap: int | None) -> int:
    n = len(loader)  # type: ignore[arg-type]
    return max(1, min(n, cap) if cap else n)
