"""The one-call planning entry point: trace, score, allocate, select (a thin layer over `planning`)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import unknown_keywords
from .graph.groups import DependencyGraph
from .graph.plan import PruningPlan
from .planning import TRACE_KEYS, PlanConfig, TargetError, check_round_to, plan_from_scores, score_channels, trace_for
from .policies import get_policy

__all__ = ["PlanConfig", "TargetError", "plan"]
INPUTS = ("data", "graph", "scores", "config")


def plan(model: nn.Module, example_inputs: Any, config: PlanConfig | None = None, *, data: Any = None,
         graph: DependencyGraph | None = None, scores: dict[str, torch.Tensor] | None = None,
         **options: Any) -> PruningPlan:
    """Decide which channels to remove: `ratio` of every group, or whatever meets `target`.

    Args:
        model: the model to plan for (not changed).
        example_inputs: a tensor, tuple or dict the model runs on.
        config: a PlanConfig; or give its fields as keywords (ratio, target, criterion, criterion_kwargs,
            policy, policy_kwargs, min_channels, max_ratio, round_to, ignore, filter_fn, heads,
            prune_outputs, probe, seed, strict, check). Options of the chosen policy (e.g. normalize= for
            "global") may also be given directly. An unknown keyword raises TypeError listing the valid ones.
        data: batches for data-driven criteria and measuring policies.
        graph: a trace of `model` to reuse (then the tracer's options must not be given).
        scores: per-group channel scores to use instead of the criterion.

    Returns:
        The PruningPlan; `plan.meta["config"]` records the config. ratio=0 gives an empty plan, which
        changes nothing; neither a ratio nor a target raises ValueError. A target the guards cannot meet
        raises TargetError (with strict=False: a warning and the most pruned plan).

    Example:
        >>> plan = pk.plan(model, x, target=pk.Target(macs=0.5), policy="srr", min_channels=4)
        >>> plan = pk.plan(model, x, pk.PlanConfig(ratio=0.3, ignore="fc"))
    """
    if config is None:
        config = _config_from_keywords(options)
    elif options:
        raise TypeError(f"pk.plan() got config= and keyword options {sorted(options)}; give one of them")
    elif not isinstance(config, PlanConfig):
        raise TypeError(f"pk.plan() config must be a PlanConfig, got {type(config).__name__}")
    if config.target is None and config.ratio is None:  # an empty plan nobody asked for would pass silently
        raise ValueError("pk.plan(): nothing to aim for: give ratio= (the fraction of every group's channels to "
                         "remove; 0 for an empty plan) or target= (e.g. pk.Target(macs=0.5))")
    if graph is None:
        graph = trace_for(model, example_inputs, config)
    else:
        given = [k for k in TRACE_KEYS if getattr(config, k) != getattr(PlanConfig, k, None)]
        if given:
            raise TypeError(f"pk.plan() got graph= and the tracer's options {given}, which the given graph "
                            f"already fixed; trace with them (pk.trace) or drop them")
        check_round_to(graph, config.round_to)
    if config.target is None and not config.ratio:
        return plan_from_scores(model, graph, {}, config)
    if scores is None:
        scores = score_channels(model, graph, config, data)
    return plan_from_scores(model, graph, scores, config, data=data, example_inputs=example_inputs)


def _config_from_keywords(options: dict[str, Any]) -> PlanConfig:
    """A PlanConfig from pk.plan's keywords; options of the chosen policy given directly join policy_kwargs."""
    fields = PlanConfig.field_names()
    policy = get_policy(options.get("policy", "uniform"))
    knobs = [k for k in policy.config_type.field_names() if k not in fields]
    unknown_keywords("pk.plan()", options, [*fields, *INPUTS, *knobs])
    flat = {k: options.pop(k) for k in list(options) if k in knobs}
    if flat:
        clash = sorted(set(flat) & set(options.get("policy_kwargs") or {}))
        if clash:
            raise TypeError(f"pk.plan(): {clash} given both directly and in policy_kwargs")
        options["policy_kwargs"] = {**(options.get("policy_kwargs") or {}), **flat}
    return PlanConfig(**options)
