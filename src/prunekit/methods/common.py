"""What every structured pruning method shares: recovery training (fine-tune, distil, or train from scratch),
following a model through several prunes (graph shrinking, plan composition), step targets and the report."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from ..graph.cost import predict
from ..graph.groups import DependencyGraph
from ..graph.plan import PruningPlan
from ..planning import enforce_target, plan_from_scores, trace_for
from ..policies import Target, get_policy
from ..surgery import apply
from ..train import DistillationLoss, TrainConfig, Trainer
from ..train.evaluation import split_batch
from .config import MethodConfig, Recovery
from .result import MethodResult


@dataclass
class MethodRun:
    """The state a method carries from its prologue: the config, the traced graph and the dense costs, the
    example inputs, the teacher (when distilling), timings and history so far."""

    config: MethodConfig
    graph: DependencyGraph
    base: dict[str, float]
    example_inputs: Any
    teacher: nn.Module | None
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)

    def record(self, phase: Recovered) -> None:
        """File a recovery phase under this run's history and timings."""
        self.history[phase.phase] = phase.history
        self.timings[phase.phase] = phase.seconds


def begin(model: nn.Module, train_loader: Iterable, example_inputs: Any, config: MethodConfig) -> MethodRun:
    """The prologue every method shares: teacher copy, example inputs, one trace, the dense costs."""
    t_start = time.perf_counter()
    teacher = teacher_of(model, config.recovery)
    ex = default_inputs(train_loader, example_inputs)
    graph = trace_for(model, ex, config.plan)
    run = MethodRun(config, graph, cost(graph), ex, teacher, t_start)
    run.timings["trace"] = time.perf_counter() - t_start
    return run


def teacher_of(model: nn.Module, opts: Recovery) -> nn.Module | None:
    """A frozen copy of the unpruned model when distillation is asked for."""
    if not opts.distill:
        return None
    t = copy.deepcopy(model).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def default_inputs(train_loader: Iterable, example_inputs: Any = None) -> Any:
    """The given example inputs, else the first sample of the first training batch."""
    if example_inputs is not None:
        return example_inputs
    inputs, _ = split_batch(next(iter(train_loader)))
    if isinstance(inputs, torch.Tensor):
        return inputs[:1]
    if isinstance(inputs, dict):
        return {k: v[:1] for k, v in inputs.items()}
    return type(inputs)(v[:1] for v in inputs)


def train(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, config: TrainConfig,
          opts: Recovery, loss_terms: Iterable = (), step_callbacks: Iterable = (),
          epoch_callbacks: Iterable = ()) -> tuple[list[dict[str, Any]], Trainer | None]:
    """Run a Trainer with extra loss terms and callbacks; returns (history, trainer)."""
    if config.epochs <= 0:
        return [], None
    trainer = Trainer(model, train_loader, val_loader, config, device=opts.device, log=opts.log)
    for t in loss_terms:
        trainer.add_loss_term(t)
    for cb in step_callbacks:
        trainer.add_step_callback(cb)
    for cb in epoch_callbacks:
        trainer.add_epoch_callback(cb)
    return trainer.fit().history, trainer


def reinitialize(model: nn.Module) -> nn.Module:
    """Fresh random weights (each module's reset_parameters) and fresh BatchNorm statistics, same shapes."""
    for m in model.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            m.reset_running_stats()
    return model


@dataclass
class Recovered:
    """One recovery phase: its name ("finetune" or "scratch"), the training history and the seconds it took."""

    phase: str
    history: list[dict[str, Any]]
    seconds: float


def recover(model: nn.Module, teacher: nn.Module | None, train_loader: Iterable, val_loader: Iterable | None,
            opts: Recovery) -> Recovered:
    """Fine-tune the pruned model in place (or re-initialise and train it from scratch), optionally distilling;
    returns what the phase did (`MethodRun.record` files it under the method's history and timings)."""
    t0 = time.perf_counter()
    phase = "scratch" if opts.from_scratch else "finetune"
    if opts.from_scratch:
        with torch.random.fork_rng(devices=[]):  # seeded re-initialisation; the caller's RNG state is kept
            torch.manual_seed(opts.seed)
            reinitialize(model)
        epochs = opts.scratch_epochs if opts.scratch_epochs is not None else opts.finetune_epochs
        cfg = opts.config(epochs, opts.scratch_lr if opts.scratch_lr is not None else 10 * opts.lr)
    else:
        cfg = opts.config(opts.finetune_epochs, opts.lr)
    terms = [DistillationLoss(teacher, opts.temperature, opts.distill_weight)] if teacher is not None else []
    history, _ = train(model, train_loader, val_loader, cfg, opts, loss_terms=terms)
    return Recovered(phase, history, time.perf_counter() - t0)


def prune_once_and_recover(model: nn.Module, run: MethodRun, scores: dict[str, torch.Tensor],
                           train_loader: Iterable, val_loader: Iterable | None,
                           extras: dict[str, Any] | None = None) -> MethodResult:
    """The tail every single-prune method shares: plan (the one planning path), apply, recover, result.
    `extras` (e.g. strength=) go to the plan's meta and the result."""
    cfg = run.config
    extras = {"criterion": plan_name(cfg.plan.criterion), "policy": policy_name(cfg.plan.policy), **(extras or {})}
    t0 = time.perf_counter()
    plan = plan_from_scores(model, run.graph, scores, cfg.plan, data=train_loader, example_inputs=run.example_inputs,
                            meta={"method": cfg_name(cfg), **extras, "method_config": cfg.to_dict()})
    apply(model, plan)
    graph = run.graph.after(plan, model)
    run.timings["prune"] = time.perf_counter() - t0
    run.record(recover(model, run.teacher, train_loader, val_loader, cfg.recovery))
    return finish(model, run, graph, plan, extras)


def finish(model: nn.Module, run: MethodRun, graph: DependencyGraph, plan: PruningPlan,
           extras: dict[str, Any]) -> MethodResult:
    """The MethodResult of a method that pruned `model` to `graph` with `plan` (on the original model)."""
    run.timings["total"] = time.perf_counter() - run.t_start
    now = cost(graph)
    base = run.base
    return MethodResult(model=model, plan=plan, method=cfg_name(run.config),
                        macs_kept=now["macs"] / max(1.0, base["macs"]),
                        params_kept=now["params"] / max(1.0, base["params"]),
                        base={k: int(v) for k, v in base.items()}, pruned={k: int(v) for k, v in now.items()},
                        widths={d.name: {"size": d.size, "kept": len(d.kept)} for d in plan.decisions},
                        timings=run.timings, history=run.history, config=run.config, extras=extras)


def cfg_name(config: MethodConfig) -> str:
    return type(config).METHOD


def plan_name(criterion: Any) -> str:
    return getattr(criterion, "name", None) or str(criterion)


def policy_name(policy: Any) -> str:
    return get_policy(policy).name


# ----------------------------------------------------------------------------- following a model through prunes
def shrink_graph(graph: DependencyGraph, plan: PruningPlan, model: nn.Module | None = None) -> DependencyGraph:
    """The graph of the model after `plan`, without tracing again: `graph.after(plan, model)`."""
    return graph.after(plan, model)


class PlanComposer:
    """Composes successive plans (each on the model the previous one left) into one plan on the original."""

    def __init__(self, graph: DependencyGraph) -> None:
        self.graph = graph
        self.kept = {g.name: list(range(g.size)) for g in graph.groups}

    def update(self, plan: PruningPlan) -> None:
        for d in plan.decisions:
            cur = self.kept[d.name]
            self.kept[d.name] = [cur[i] for i in d.kept]

    def plan(self, meta: dict | None = None) -> PruningPlan:
        sizes = {g.name: g.size for g in self.graph.groups}
        return PruningPlan.from_kept(self.graph, {n: k for n, k in self.kept.items() if len(k) < sizes[n]}, meta)


def step_target(base: dict[str, float], now: dict[str, float], target: Target | None, ratio: float | None,
                step: int, steps: int) -> tuple[Target | None, float | None]:
    """The (target, ratio) of prune step `step` of `steps` on the current model: cumulative fractions move
    linearly from the dense model to the final target (ratios of channels likewise)."""
    frac = step / steps
    if target is not None:
        items = {}
        for k, v in target.items().items():
            want = 1.0 - (1.0 - v) * frac
            items[k] = min(1.0, want * base[k] / max(1.0, now[k]))
        return Target(**items), None
    done = ratio * (step - 1) / steps
    want = ratio * frac
    return None, max(0.0, 1.0 - (1.0 - want) / max(1e-9, 1.0 - done))


def cost(graph: DependencyGraph) -> dict[str, float]:
    return predict(graph, {})


def check_final(run: MethodRun, graph: DependencyGraph) -> None:
    """Hold a multi-step method's final model to the overall MAC / parameter target (TargetError, or a
    warning with strict=False)."""
    p = run.config.plan
    if p.target is None:
        return
    now = cost(graph)
    achieved = {k: now[k] / max(1.0, run.base[k]) for k in ("macs", "params") if k in p.target.items()}
    enforce_target(p.target, achieved, p.strict,
                   f"min_channels={p.min_channels}, max_ratio={p.max_ratio}, round_to={p.round_to}")


def plan_meta(cfg: MethodConfig, extras: dict[str, Any]) -> dict[str, Any]:
    """The meta of a composed plan: what the planning path records, for the whole method."""
    p = cfg.plan
    return {"method": cfg.METHOD, "ratio": p.ratio, "target": p.target.items() if p.target else None, **extras,
            "config": p.to_dict(), "method_config": cfg.to_dict()}
