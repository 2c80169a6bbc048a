"""What every structured method returns: one `MethodResult`."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterator

from torch import nn

from ..config import Config, json_data
from ..graph.plan import PruningPlan


@dataclass
class MethodResult:
    """The pruned model, the plan on the original architecture, what it kept and how it got there.

    `model, result = oneshot(...)` unpacks (the result itself second), and `result["plan"]`,
    `result.get("removed_norm")` read fields and method-specific extras alike.

    Attributes:
        model: the pruned model (the one passed in, changed in place).
        plan: the plan on the original architecture (replayable with pk.apply on a fresh copy).
        method: the registered method name.
        macs_kept, params_kept: fractions of the dense model's MACs and parameters kept.
        base, pruned: MACs and parameters before and after.
        widths: per pruned group, its size and kept channels.
        timings: seconds per phase (and "total").
        history: per phase, the training history (and per-step records of iterative methods).
        config: the method's config (its `to_dict()` goes to report.json).
        extras: what is particular to the method (criterion, policy, removed_norm, prunes, ...).
    """

    model: nn.Module
    plan: PruningPlan
    method: str
    macs_kept: float
    params_kept: float
    base: dict[str, int]
    pruned: dict[str, int]
    widths: dict[str, dict[str, int]]
    timings: dict[str, float]
    history: dict[str, Any]
    config: Config | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self

    def _names(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):  # as the (model, result) pair it unpacks to
            return (self.model, self)[key]
        if key in self._names():
            return getattr(self, key)
        if key in self.extras:
            return self.extras[key]
        raise KeyError(f"{key!r}: a MethodResult holds {', '.join(self.keys())}")

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._names():
            setattr(self, key, value)
        else:
            self.extras[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._names() or key in self.extras

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def keys(self) -> list[str]:
        return [*self._names(), *self.extras]

    def to_dict(self) -> dict[str, Any]:
        """JSON data for a report: everything but the model, the plan as its dict, the config as its dict."""
        return {"method": self.method, "macs_kept": self.macs_kept, "params_kept": self.params_kept,
                "base": dict(self.base), "pruned": dict(self.pruned), "widths": json_data(self.widths),
                "timings": dict(self.timings), "history": json_data(self.history),
                "config": self.config.to_dict() if self.config is not None else None,
                "plan": self.plan.to_dict(), **{k: json_data(v) for k, v in self.extras.items()}}
