"""What every structured pruning method shares: recovery training (fine-tune, distil, or train from scratch),
following a model through several prunes (graph shrinking, plan composition), step targets and the report."""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..graph.cost import predict
from ..graph.groups import DependencyGraph
from ..graph.plan import PruningPlan
from ..policies.base import Target, max_removable
from ..train import DistillationLoss, TrainConfig, Trainer


@dataclass
class Recovery:
    """How a method recovers accuracy after pruning, and the training settings it shares.

    finetune_epochs / lr: the fine-tuning budget. distill: add knowledge distillation from the unpruned model
    (temperature, distill_weight = alpha of DistillationLoss). from_scratch: re-initialise the pruned
    architecture and train it for scratch_epochs (default finetune_epochs) at scratch_lr (default 10 x lr)
    instead of fine-tuning: the control of "Rethinking the Value of Network Pruning" (Liu et al. 2019).
    train_config: every other TrainConfig field (optimizer, weight decay, ...); epochs and lr are set per phase.
    trace_kw: how the model is traced (`pk.trace` keywords: modules to leave alone, whole heads, round_to).
    """

    finetune_epochs: int = 1
    lr: float = 0.01
    train_config: TrainConfig | None = None
    max_steps_per_epoch: int | None = None
    distill: bool = False
    temperature: float = 4.0
    distill_weight: float = 0.5
    from_scratch: bool = False
    scratch_epochs: int | None = None
    scratch_lr: float | None = None
    device: Any = None
    log: Callable[[str], None] | None = None
    seed: int = 0
    trace_kw: dict[str, Any] | None = None  # for pk.trace: ignore=[...], heads=True, round_to=N

    def config(self, epochs: int, lr: float, **over: Any) -> TrainConfig:
        base = self.train_config or TrainConfig(progress=True, verbose=self.log is not None)
        fields = {"epochs": int(epochs), "lr": float(lr), "seed": self.seed, **over}
        if self.max_steps_per_epoch is not None and "max_steps_per_epoch" not in over:
            fields["max_steps_per_epoch"] = self.max_steps_per_epoch
        return dataclasses.replace(base, **fields)


def trace_model(model: nn.Module, example_inputs: Any, opts: Recovery) -> DependencyGraph:
    from ..graph.trace import trace
    return trace(model, example_inputs, **(opts.trace_kw or {}))


def split_options(kw: dict[str, Any]) -> tuple[Recovery, dict[str, Any]]:
    """(Recovery from the keys it knows, the remaining keys)."""
    names = {f.name for f in dataclasses.fields(Recovery)}
    rec = Recovery(**{k: v for k, v in kw.items() if k in names})
    return rec, {k: v for k, v in kw.items() if k not in names}


def no_extra(method: str, rest: dict[str, Any]) -> None:
    if rest:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(sorted(rest))}")


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
    from ..train.evaluation import split_batch
    inputs, _ = split_batch(next(iter(train_loader)))
    if isinstance(inputs, torch.Tensor):
        return inputs[:1]
    if isinstance(inputs, dict):
        return {k: v[:1] for k, v in inputs.items()}
    return type(inputs)(v[:1] for v in inputs)


def as_target(target: Target | dict | None, ratio: float | None) -> Target | None:
    if isinstance(target, dict):
        target = Target(**target)
    if target is None and not ratio:
        raise ValueError("give a target (pk.Target(macs=0.5), a dict) or a ratio > 0")
    return target


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


def recover(model: nn.Module, teacher: nn.Module | None, train_loader: Iterable, val_loader: Iterable | None,
            opts: Recovery, timings: dict[str, float], history: dict[str, Any]) -> nn.Module:
    """Fine-tune the pruned model (or re-initialise and train it from scratch), optionally distilling."""
    t0 = time.perf_counter()
    phase = "scratch" if opts.from_scratch else "finetune"
    if opts.from_scratch:
        torch.manual_seed(opts.seed)
        reinitialize(model)
        epochs = opts.scratch_epochs if opts.scratch_epochs is not None else opts.finetune_epochs
        cfg = opts.config(epochs, opts.scratch_lr if opts.scratch_lr is not None else 10 * opts.lr)
    else:
        cfg = opts.config(opts.finetune_epochs, opts.lr)
    terms = [DistillationLoss(teacher, opts.temperature, opts.distill_weight)] if teacher is not None else []
    history[phase], _ = train(model, train_loader, val_loader, cfg, opts, loss_terms=terms)
    timings[phase] = time.perf_counter() - t0
    return model


def prune_once_and_recover(name: str, model: nn.Module, graph: DependencyGraph, base: dict[str, float],
                           scores: dict, train_loader: Iterable, val_loader: Iterable | None, example_inputs: Any,
                           opts: Recovery, teacher: nn.Module | None, timings: dict[str, float],
                           history: dict[str, Any], t_start: float, *, criterion: str, policy: str,
                           target: Target | None, ratio: float | None, min_channels: int, max_ratio: float,
                           policy_kw: dict | None, **extra: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The tail every single-prune method shares: allocate and select with `policy`, apply, recover, report.
    `extra` (e.g. strength=) goes to the plan's meta and the report."""
    from ..surgery import apply

    t0 = time.perf_counter()
    meta = {"method": name, "criterion": criterion, "policy": policy, "ratio": ratio, **extra,
            "target": target.items() if target else None}
    plan = plan_step(model, graph, scores, policy, target, ratio, min_channels, max_ratio, policy_kw,
                     data=train_loader, example_inputs=example_inputs, seed=opts.seed, meta=meta)
    apply(model, plan)
    graph = graph.after(plan, model)
    timings["prune"] = time.perf_counter() - t0
    recover(model, teacher, train_loader, val_loader, opts, timings, history)
    timings["total"] = time.perf_counter() - t_start
    return model, summary(name, base, graph, plan, timings, history, criterion=criterion, policy=policy, **extra)


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


def floor_counts(graph: DependencyGraph, counts: dict[str, int], original_sizes: dict[str, int],
                 min_channels: int = 1, max_ratio: float = 0.9) -> dict[str, int]:
    """Cap counts so that, over all steps, no group goes below what the guards allow on the original size."""
    out = {}
    for g in graph.prunable_groups():
        n = counts.get(g.name, 0)
        floor = max(min_channels, math.ceil(original_sizes.get(g.name, g.size) * (1 - max_ratio)), 1)
        n = min(n, max(0, g.size - floor), max_removable(g, min_channels, 1.0))
        if n > 0:
            out[g.name] = n
    return out


def cost(graph: DependencyGraph) -> dict[str, float]:
    return predict(graph, {})


def summary(name: str, base: dict[str, float], graph: DependencyGraph, plan: PruningPlan,
            timings: dict[str, float], history: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The report dict every method returns."""
    now = cost(graph)
    return {"method": name, "base": {k: int(v) for k, v in base.items()}, "pruned": {k: int(v) for k, v in now.items()},
            "macs_kept": now["macs"] / max(1.0, base["macs"]), "params_kept": now["params"] / max(1.0, base["params"]),
            "widths": {d.name: {"size": d.size, "kept": len(d.kept)} for d in plan.decisions},
            "plan": plan, "timings": timings, "history": history, **extra}


def plan_step(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], policy: str,
              target: Target | None, ratio: float | None, min_channels: int = 1, max_ratio: float = 0.9,
              policy_kw: dict | None = None, original_sizes: dict[str, int] | None = None, data: Any = None,
              example_inputs: Any = None, seed: int = 0, meta: dict | None = None) -> PruningPlan:
    """Allocate with `policy`, keep each group's best-scored channels, return the plan (no surgery)."""
    from ..policies import get_policy, select_kept
    counts = get_policy(policy)(model, graph, scores, ratio=ratio, target=target, min_channels=min_channels,
                                max_ratio=max_ratio, data=data, example_inputs=example_inputs, seed=seed,
                                **(policy_kw or {}))
    if original_sizes is not None:
        counts = floor_counts(graph, counts, original_sizes, min_channels, max_ratio)
    return PruningPlan.from_kept(graph, select_kept(graph, scores, counts), meta)


def score(model: nn.Module, graph: DependencyGraph, criterion: str, data: Any, batches: int = 8, seed: int = 0,
          criterion_kw: dict | None = None) -> dict[str, torch.Tensor]:
    """Scores of `criterion` (data only read by criteria that need it)."""
    from ..criteria import get_criterion
    crit = get_criterion(criterion, seed=seed, batches=batches, **(criterion_kw or {}))
    return crit(model, graph, data=data if crit.needs_data else None)
