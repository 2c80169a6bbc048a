"""Checks that run before a plan changes anything: the plan is well formed and was made for this model.

``apply`` calls :func:`check_plan_fits` first, so a plan that does not fit raises with the model untouched.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import PlanFormatError, PlanMismatchError
from ..graph.plan import PruningPlan
from ..graph.plan_schema import check_kept, members_digest, model_identity

PlanLike = Any  # PruningPlan | dict | JSON text | path to a plan file


def coerce_plan(plan: PlanLike) -> PruningPlan:
    """A PruningPlan from a plan, its dict form, JSON text (a string starting with "{") or a plan file path.

    Raises:
        TypeError: for anything else.
        PlanFormatError: for malformed JSON or a plan that breaks the schema.
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(plan, PruningPlan):
        return plan
    if isinstance(plan, dict):
        return PruningPlan.from_dict(plan)
    if isinstance(plan, str) and plan.lstrip().startswith("{"):
        return PruningPlan.from_json(plan)
    if isinstance(plan, (str, os.PathLike)):
        return PruningPlan.load(Path(plan))
    raise TypeError(f"plan must be a PruningPlan, a plan dict, JSON text or a plan file path; got "
                    f"{type(plan).__name__}")


def floating_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes of the model's floating-point state tensors (what the tracer records as graph.shapes)."""
    return {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()
            if hasattr(v, "is_floating_point") and v.is_floating_point()}


def _check_structure(plan: PruningPlan) -> None:
    """Decisions built in code (not parsed from JSON) get the same checks as the schema applies."""
    seen = set()
    for d in plan.decisions:
        if d.name in seen:
            raise PlanFormatError(f"group {d.name!r} appears twice in the plan")
        seen.add(d.name)
        check_kept(list(d.kept), d.size, f"group {d.name!r} kept")
        for m in d.members:
            if len(m.index) != d.size:
                raise PlanFormatError(f"group {d.name!r}: member {m.key!r} maps {len(m.index)} channels, the group "
                                      f"has {d.size}")


def _problems(shapes: dict[str, tuple[int, ...]], plan: PruningPlan, removals: list, allow_unshaped: bool
              ) -> list[str]:
    problems = []
    for key, shape in plan.shapes.items():
        if key not in shapes:
            problems.append(f"{key}: not in the model")
        elif list(shapes[key]) != list(shape):
            problems.append(f"{key}: model has shape {list(shapes[key])}, plan expects {list(shape)}")
    unshaped = set()
    for key, dim, idx in removals:
        if key not in shapes:
            if key not in plan.shapes:
                problems.append(f"{key}: not in the model")
            continue
        if key not in plan.shapes:
            unshaped.add(key)
        if dim >= len(shapes[key]):
            problems.append(f"{key}: the plan cuts dim {dim} of a {len(shapes[key])}-dim tensor")
        elif idx and (idx[0] < 0 or idx[-1] >= shapes[key][dim]):
            problems.append(f"{key}: index {idx[-1]} out of range for dim {dim} of size {shapes[key][dim]}")
    if unshaped and not allow_unshaped:
        problems.append(f"the plan records no shape for {len(unshaped)} tensor(s) it cuts ({sorted(unshaped)[:3]}), so "
                        "it cannot be checked against this model; pass allow_unshaped=True to apply it unchecked")
    return problems


def check_plan_fits(model: nn.Module, plan: PlanLike, allow_unshaped: bool = False) -> PruningPlan:
    """Check, without changing anything, that ``plan`` can be applied to ``model``; return it as a PruningPlan.

    Checked: the plan's structure (kept lists non-empty, increasing, unique, in range); every tensor it
    records or cuts exists with the recorded shape; every index it removes is in range; and, when the plan
    records the identity of its model (plans made by ``PruningPlan.from_kept`` do), that this model has the
    same tensors and shapes throughout, so that a resnet20 plan is refused by resnet32.

    Args:
        model: the model the plan is about to change.
        plan: a PruningPlan, its dict form, JSON text, or a plan file path.
        allow_unshaped: apply a plan that records no shape for tensors it cuts (hand-made plans); the
            identity and index checks still run.

    Returns:
        The plan as a PruningPlan.

    Raises:
        PlanMismatchError: the plan was made for another model.
        PlanFormatError: the plan itself is malformed.

    Example:
        >>> plan = check_plan_fits(model, "plan.json")  # doctest: +SKIP
    """
    return fitted_removals(model, plan, allow_unshaped)[0]


def fitted_removals(model: nn.Module, plan: PlanLike, allow_unshaped: bool = False
                    ) -> tuple[PruningPlan, list[tuple[str, int, list[int]]]]:
    """:func:`check_plan_fits`, also returning ``plan.removals()`` (computed once: surgery needs it too)."""
    plan = coerce_plan(plan)
    _check_structure(plan)
    shapes = floating_shapes(model)
    removals = plan.removals()
    problems = _problems(shapes, plan, removals, allow_unshaped)
    if not problems and plan.identity is not None:
        have = model_identity(shapes)
        if have != {"tensors": plan.identity.get("tensors"), "sha256": plan.identity.get("sha256")}:
            problems.append(f"the plan was made for another model ({plan.identity.get('tensors')} floating-point "
                            f"tensors with other names or shapes; this model has {have['tensors']}); set "
                            "plan.identity = None to apply it where only its own tensors are checked")
    recorded = (plan.identity or {}).get("groups")
    if not problems and recorded is not None:  # plans written before groups were recorded have none
        for d in plan.decisions:
            if d.removed and recorded.get(d.name) != members_digest(d.members):
                problems.append(f"group {d.name!r}: its members ({len(d.members)} tensor slices) are not the ones "
                                "recorded when the plan was made (a member was removed, added or changed), so it "
                                "would not cut every tensor that shares its channels")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PlanMismatchError("plan does not match this model: " + "; ".join(problems[:5]) + more)
    return plan, removals
