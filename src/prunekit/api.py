"""The one-call planning entry point: trace, score, allocate, select."""
from __future__ import annotations

from typing import Any

from torch import nn

from .criteria import get_criterion
from .graph.groups import DependencyGraph
from .graph.plan import PruningPlan
from .graph.trace import trace
from .policies import Target, get_policy, select_kept


def plan(model: nn.Module, example_inputs: Any, ratio: float | None = None, target: Target | None = None,
         criterion: str = "l1", policy: str = "uniform", data=None, graph: DependencyGraph | None = None,
         round_to: int = 1, ignore=None, min_channels: int = 1, max_ratio: float = 0.9, seed: int = 0,
         scores: dict | None = None, check: bool = True, criterion_kwargs: dict | None = None,
         heads: bool = False, **policy_kwargs) -> PruningPlan:
    """Decide which channels to remove: `ratio` of every group, or whatever meets `target`.

    ratio=0 (or None without target) gives an empty plan, which changes nothing. check: run the pruned
    structure once on the example inputs before returning the plan. heads: remove whole attention heads
    (num_heads shrinks) rather than head_dim; see `trace`.
    """
    if ratio is not None and not 0 <= ratio < 1:
        raise ValueError(f"ratio={ratio}: give the fraction of channels to remove, in [0, 1)")
    if isinstance(target, dict):
        target = Target(**target)
    graph = graph or trace(model, example_inputs, ignore=ignore, round_to=round_to, heads=heads)
    meta = {"criterion": str(criterion), "policy": str(policy), "ratio": ratio,
            "target": target.items() if target else None}
    if target is None and not ratio:
        return PruningPlan.from_kept(graph, {}, meta)
    if scores is None:
        scores = get_criterion(criterion, **{"seed": seed, **(criterion_kwargs or {})})(model, graph, data=data)
    counts = get_policy(policy)(model, graph, scores, ratio=ratio, target=target, min_channels=min_channels,
                                max_ratio=max_ratio, data=data, example_inputs=example_inputs, seed=seed,
                                **policy_kwargs)
    kept = select_kept(graph, scores, counts)
    result = PruningPlan.from_kept(graph, kept, meta)
    if check and not result.is_empty():
        check_plan(model, result, example_inputs)
    return result


def check_plan(model: nn.Module, plan: PruningPlan, example_inputs: Any) -> None:
    """Apply `plan` to a structural copy and run one forward; raise a clear error if the model breaks.

    Single groups are probed at trace time; this catches combinations of groups that only fail together.
    """
    from .graph.probe import _runner

    run = _runner(model, example_inputs)
    ref = run(None)
    try:
        shapes = run(plan)
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"the plan breaks the model's forward ({type(e).__name__}: {e}); exclude the groups "
                           f"involved with ignore=[...]") from e
    if shapes != ref:
        raise RuntimeError(f"the plan changes the output shapes {ref} -> {shapes}")
