"""The one planning path: scores -> policy -> select_kept -> PruningPlan -> target and forward checks.

`pk.plan` and every method go through `plan_from_scores`, configured by one `PlanConfig`: what to reach
(ratio or target), how to score (criterion), how to allocate (policy), the guards (min_channels, max_ratio,
round_to), what to leave alone (ignore, filter_fn) and how to trace (heads, prune_outputs, probe). A target
the guards cannot meet raises `TargetError` with what was achieved, or warns when `strict=False`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from .config import Config, check_bool, check_float, check_int, unknown_keywords
from .criteria import Criterion, criterion_options, get_criterion
from .graph.cost import predict
from .graph.groups import DependencyGraph
from .graph.ignore import as_entries
from .graph.plan import PruningPlan
from .probing import exclude_breaking, trace
from .policies import Allocation, Policy, Target, get_policy, select_kept
from .policies.base import max_removable

# the tracer's module (its name is shadowed by the `trace` function in prunekit.graph); the function is looked
# up at call time so that instrumenting prunekit.graph.trace.trace (tests count traces) sees every call
TRACE_KEYS = ("ignore", "filter_fn", "round_to", "heads", "prune_outputs", "probe")
TOLERANCE = 1e-9  # policies land on or below a target; this only absorbs float rounding
LATENCY_TOLERANCE = 0.03  # measured latency is noisy: the auto policy corrects to within this share
# what a target term is a fraction of, where its name alone does not say (messages and report.md name it)
TERM_UNITS = {"size": "state-dict bytes"}


class TargetError(ValueError):
    """A target the guards (min_channels, max_ratio, round_to, ignore) cannot meet.

    Attributes: target (the fractions asked for), achieved (the fractions the most pruned allowed plan keeps).
    """

    def __init__(self, message: str, target: dict[str, float], achieved: dict[str, float]) -> None:
        super().__init__(message)
        self.target, self.achieved = target, achieved


def _target(value: Any) -> Target | None:
    if value is None or isinstance(value, Target):
        return value
    if isinstance(value, dict):
        return Target(**value)
    raise TypeError(f"target must be a pk.Target or a dict such as {{'macs': 0.5}}, got {type(value).__name__}")


@dataclass
class PlanConfig(Config):
    """Everything that decides a plan (see the module docstring); recorded in `plan.meta["config"]`.

    Example:
        >>> cfg = PlanConfig(target=Target(macs=0.5), policy="srr", min_channels=2)
        >>> PlanConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    RUNTIME: ClassVar[tuple[str, ...]] = ("filter_fn",)
    CONVERT: ClassVar[dict[str, Callable[[Any], Any]]] = {"target": _target}

    ratio: float | None = None
    target: Target | None = None
    criterion: Any = "l1"
    criterion_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: Any = "uniform"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    min_channels: int = 1
    max_ratio: float = 0.9
    round_to: int = 1
    ignore: Any = None
    filter_fn: Callable[[nn.Module, str], bool] | None = None
    heads: bool = False
    prune_outputs: bool = False
    probe: bool = True
    seed: int = 0
    strict: bool = True
    check: bool = True

    def __post_init__(self) -> None:
        w = "PlanConfig"
        self.target = _target(self.target)
        check_float(w, "ratio", self.ratio, 0.0, 1.0, hi_open=True, optional=True)
        if self.ratio is not None and self.target is not None:
            raise ValueError(f"give ratio or target, not both (ratio={self.ratio}, target={self.target.items()})")
        check_int(w, "min_channels", self.min_channels, lo=1)
        check_float(w, "max_ratio", self.max_ratio, 0.0, 1.0, lo_open=True, hi_open=True)
        check_int(w, "round_to", self.round_to, lo=1)
        check_int(w, "seed", self.seed)
        for name in ("heads", "prune_outputs", "probe", "strict", "check"):
            check_bool(w, name, getattr(self, name))
        if self.filter_fn is not None and not callable(self.filter_fn):
            raise TypeError(f"{w}: filter_fn must be a callable fn(module, name) -> bool")
        self.ignore = as_entries(self.ignore) or None
        self.criterion_kwargs = dict(self.criterion_kwargs or {})
        self.policy_kwargs = dict(self.policy_kwargs or {})
        if isinstance(self.criterion, Criterion):
            if self.criterion_kwargs:
                raise TypeError(f"{w}: criterion is already built; criterion_kwargs "
                                f"{sorted(self.criterion_kwargs)} would be ignored")
        else:
            get_criterion(self.criterion, **{"seed": self.seed, **self.criterion_kwargs})  # checks name and keys
        policy_config = self.policy_config()  # checks the policy name and its options
        unread = getattr(policy_config, "unread", None)  # a policy config may say which given options go unread
        msgs = unread(self.policy_kwargs, self.target) if callable(unread) else []
        if msgs:
            raise ValueError(f"{w}: policy {get_policy(self.policy).name!r}: {'; '.join(msgs)} (an option this "
                             "plan would not read is refused, not ignored)")

    def policy_config(self) -> Any:
        """The policy's config dataclass, built from `policy_kwargs` (unknown keys raise TypeError)."""
        return get_policy(self.policy).make_config(None, self.policy_kwargs)

    def make_criterion(self, batches: int | None = None) -> Criterion:
        """The criterion, seeded by `seed`; `batches` goes to data-driven criteria unless given explicitly."""
        if isinstance(self.criterion, Criterion):
            return self.criterion
        kw = {"seed": self.seed, **self.criterion_kwargs}
        if batches is not None and "batches" in criterion_options(self.criterion):
            kw.setdefault("batches", batches)
        return get_criterion(self.criterion, **kw)

    def trace_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in TRACE_KEYS}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if isinstance(self.criterion, Criterion):
            out["criterion"], out["criterion_kwargs"] = self.criterion.name, self.criterion.config.to_dict()
        if isinstance(self.policy, Policy) or callable(self.policy):
            out["policy"] = get_policy(self.policy).name
        out["ignore"] = None if self.ignore is None else [i if isinstance(i, str) else
                                                         getattr(i, "__name__", type(i).__name__)
                                                         for i in self.ignore]
        return out


def plan_config(where: str, kwargs: dict[str, Any], **defaults: Any) -> PlanConfig:
    """A PlanConfig from keywords over `defaults`; `trace_kw={...}` (the tracer's keywords) is unpacked."""
    kw = {**defaults, **kwargs}
    tkw = kw.pop("trace_kw", None) or {}
    unknown_keywords(f"{where} trace_kw", tkw, TRACE_KEYS)
    clash = sorted(set(tkw) & set(kwargs))
    if clash:
        raise TypeError(f"{where}: {clash} given both directly and in trace_kw")
    return PlanConfig.from_kwargs(where, {**kw, **tkw})


def trace_for(model: nn.Module, example_inputs: Any, config: PlanConfig) -> DependencyGraph:
    """The graph `config` plans on; a round_to no prunable group can take raises ValueError."""
    graph = trace(model, example_inputs, **config.trace_kwargs())
    check_round_to(graph, config.round_to)
    return graph


def check_round_to(graph: DependencyGraph, round_to: int) -> None:
    if round_to > 1 and graph.prunable_groups() and not any(g.size > round_to for g in graph.prunable_groups()):
        widest = max(g.size for g in graph.prunable_groups())
        raise ValueError(f"round_to={round_to} is not smaller than any prunable group (the widest has {widest} "
                         f"channels), so nothing could be removed; use round_to < {widest}")


def score_channels(model: nn.Module, graph: DependencyGraph, config: PlanConfig, data: Any = None,
                   batches: int | None = None) -> dict[str, torch.Tensor]:
    """Per group, one score per channel from `config.criterion` (data only read by criteria that need it)."""
    crit = config.make_criterion(batches)
    return crit(model, graph, data=data if crit.needs_data else None)


def achieved_fractions(graph: DependencyGraph, counts: dict[str, int], target: Target,
                       info: dict[str, Any]) -> dict[str, float]:
    """Per target term, the fraction of the dense model the counts keep (latency / size from the policy)."""
    base, now = predict(graph, {}), predict(graph, counts)
    goals, out = target.items(), {}
    for k in ("macs", "params"):
        if k in goals:
            out[k] = now[k] / max(1.0, base[k])
    cost = info.get("cost") or {}
    if "size" in goals and "size" in cost:
        out["size"] = cost["size"] * goals["size"]
    if "latency" in goals:
        measured = info.get("latency_measured_ratio")
        if measured is not None:
            out["latency"] = float(measured)
        elif "latency" in cost:
            out["latency"] = cost["latency"] * goals["latency"]
    return out


def missed_targets(goals: dict[str, float], achieved: dict[str, float]) -> dict[str, float]:
    """The achieved fractions above their goal (beyond the rounding / latency-noise tolerance)."""
    return {k: v for k, v in achieved.items()
            if k in goals and v > goals[k] * (1 + (LATENCY_TOLERANCE if k == "latency" else TOLERANCE))}


def enforce_target(target: Target, achieved: dict[str, float], strict: bool, guards: str) -> None:
    """Raise TargetError (strict) or warn when an achieved fraction is above its target."""
    goals = target.items()
    missed = missed_targets(goals, achieved)
    if not missed:
        return
    what = ", ".join(f"{k}={goals[k]:g} ({TERM_UNITS[k] + ', ' if k in TERM_UNITS else ''}achieved {v:.4f})"
                     for k, v in missed.items())
    msg = (f"target {what} cannot be met within {guards}; the most pruned plan the guards allow keeps "
           f"{', '.join(f'{k}={v:.4f}' for k, v in achieved.items())}")
    if strict:
        raise TargetError(msg + " (pass strict=False to accept it with a warning)", goals, achieved)
    warnings.warn(msg + " (strict=False: returning it)", stacklevel=3)


def plan_from_scores(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], config: PlanConfig,
                     *, data: Any = None, example_inputs: Any = None, original_sizes: dict[str, int] | None = None,
                     meta: dict[str, Any] | None = None, enforce: bool = True) -> PruningPlan:
    """Allocate with `config.policy`, keep each group's best-scored channels, check, return the plan.

    The one path from scores to a plan, used by `pk.plan` and every method. The plan's meta records the
    config, the target and what was achieved. With `config.check` and example inputs, the pruned structure
    is run once on a shape-only copy before the plan is returned.

    Args:
        model: the model the graph was traced from (not changed).
        graph: its DependencyGraph.
        scores: per prunable group, one score per channel (higher = keep), e.g. from `get_criterion`.
        config: the PlanConfig (ratio or target, policy and its options, guards, seed, check).
        data: batches for policies that measure (auto).
        example_inputs: inputs for the forward check and for latency targets.
        original_sizes: group sizes of the model before earlier prunes, so the guards hold over every step.
        meta: extra entries for `plan.meta`.
        enforce: hold the result to the target (TargetError / warning); steps toward a final target pass False.

    Returns:
        The PruningPlan.

    Example:
        >>> graph = pk.trace(model, x)
        >>> plan = plan_from_scores(model, graph, get_criterion("l1")(model, graph), PlanConfig(ratio=0.5), example_inputs=x)
        >>> plan.meta["ratio"]
        0.5
    """
    target = config.target
    meta = {"criterion": _name(config.criterion), "policy": get_policy(config.policy).name, "ratio": config.ratio,
            "target": target.items() if target else None, **(meta or {}), "config": config.to_dict()}
    if target is None and not config.ratio:
        return PruningPlan.from_kept(graph, {}, meta)
    alloc = Allocation(config.ratio, target, config.min_channels, config.max_ratio, config.seed, data,
                       example_inputs)
    policy = get_policy(config.policy)
    counts = policy.run(model, graph, scores, alloc, config.policy_config())
    if original_sizes is not None:
        counts = floor_counts(graph, counts, original_sizes, config.min_channels, config.max_ratio)
    guards = f"min_channels={config.min_channels}, max_ratio={config.max_ratio}, round_to={config.round_to}"
    if target is not None:
        meta["achieved"] = achieved_fractions(graph, counts, target, alloc.info)
        if enforce:
            enforce_target(target, meta["achieved"], config.strict, guards)
    elif enforce and not counts:
        msg = f"ratio={config.ratio} removes no channel within {guards}"
        if config.strict:
            raise ValueError(msg + " (pass strict=False to accept an empty plan)")
        warnings.warn(msg, stacklevel=2)
    plan = PruningPlan.from_kept(graph, select_kept(graph, scores, counts), meta)
    if config.check and example_inputs is not None and not plan.is_empty():
        broken = exclude_breaking(model, graph, plan, example_inputs)  # runs the plan once; marks what breaks it
        if broken:  # those groups are now fixed with the error as their reason: allocate again without them
            meta["excluded"] = {**meta.get("excluded", {}), **broken}
            return plan_from_scores(model, graph, scores, config, data=data, example_inputs=example_inputs,
                                    original_sizes=original_sizes, meta=meta, enforce=enforce)
    return plan


def rescore(graph: DependencyGraph, plan: PruningPlan, scores: dict[str, torch.Tensor],
            meta: dict[str, Any] | None = None) -> PruningPlan:
    """`plan`'s counts per group with the kept channels chosen again from `scores` (ADMM's final selection,
    after training drove the removed channels toward zero). The structure `plan_from_scores` checked is
    unchanged (same widths), so its forward check still holds."""
    counts = {d.name: len(d.removed) for d in plan.decisions}
    return PruningPlan.from_kept(graph, select_kept(graph, scores, counts), meta if meta is not None else plan.meta)


def _name(criterion: Any) -> str:
    return criterion.name if isinstance(criterion, Criterion) else str(criterion)


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
