"""Rebuild a saved model's architecture: an allow-listed registry builds it, the recorded plans shrink it."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..errors import ModelFileError, PlanFormatError, PlanMismatchError
from ..graph.plan import PruningPlan
from ..models.resolve import build_arch
from .apply import PLANS_ATTR, apply


def parse_plans(plans: Any, source: str) -> list[PruningPlan]:
    """The plans of a description, each validated against the plan schema."""
    if not isinstance(plans, list):
        raise ModelFileError(f"{source}: 'plans' must be a list of plans, got {type(plans).__name__}")
    out = []
    for i, p in enumerate(plans):
        try:
            out.append(PruningPlan.from_dict(p))
        except PlanFormatError as e:
            raise ModelFileError(f"{source}: plan {i + 1} of {len(plans)} is malformed: {e}") from e
    return out


def rebuild(desc: dict, model: nn.Module | None = None, factory: Callable[..., nn.Module] | None = None,
            source: str = "the file") -> nn.Module:
    """The unpruned architecture with every recorded plan replayed (weights still random).

    Args:
        desc: ``{"arch": <architecture description> | None, "plans": [plan dicts]}``.
        model: an unpruned instance to shrink instead of building one.
        factory: the caller's builder, called with the description's kwargs (see ``build_arch``).
        source: what to name in errors.

    Returns:
        The model, shaped like the one that was saved.
    """
    if model is not None and factory is not None:
        raise TypeError("pass model= or factory=, not both")
    plans = parse_plans(desc.get("plans", []), source)
    if model is None:
        arch = desc.get("arch")
        if not arch:
            raise ModelFileError(f"{source} does not say how to rebuild its model; pass model=<unpruned model> or "
                                 "factory=<callable>")
        model = build_arch(arch, factory=factory, source=source)
    for i, p in enumerate(plans):
        try:
            apply(model, p)
        except (PlanMismatchError, PlanFormatError) as e:
            raise ModelFileError(f"{source}: plan {i + 1} of the file does not fit the model: {e}") from e
    object.__setattr__(model, PLANS_ATTR, [p.to_dict() for p in plans])
    return model
