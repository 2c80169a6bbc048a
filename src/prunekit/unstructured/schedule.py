"""Gradual pruning with the AGP cubic schedule (Zhu and Gupta 2017).

``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / T)^3`` for ``t0 <= t <= t0 + T``: prune fast early, when the
network has redundant weights, and slowly near the end. :class:`AGPPruner` recomputes masks every
``frequency`` steps; it is a step callback for ``Trainer.add_step_callback``: after optimizer step ``t``
(counted from 1) it applies the target for ``t``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunekit.config import unknown_keywords
from prunekit.surgery.masks import FilterFn, apply_masks, get_masks
from prunekit.unstructured.criteria import WEIGHT_CRITERIA, Criterion, criterion_options, weight_scores
from prunekit.unstructured.prune import Sparsity, layer_sparsities, masks_from_scores


def agp_sparsity(t: int | float, total_steps: int, final: float, initial: float = 0.0, begin: int = 0) -> float:
    """Target sparsity at step ``t``: ``initial`` before ``begin``, ``final`` after ``begin + total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    p = min(max((t - begin) / total_steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3


@dataclass
class AGPPruner:
    """Raise sparsity from ``initial_sparsity`` to ``final_sparsity`` over ``total_steps`` optimizer steps.

    Masks are recomputed at ``begin_step``, every ``frequency`` steps after it and at the last step, and
    are monotone (a weight once pruned stays pruned). ``final_sparsity`` is a float or, with
    ``scope="layer"``, a per-layer mapping as in :func:`prunekit.unstructured.layer_sparsities`.
    """

    model: nn.Module
    final_sparsity: Sparsity
    total_steps: int
    initial_sparsity: float = 0.0
    begin_step: int = 0
    frequency: int = 100
    criterion: str | Criterion = "magnitude"
    scope: str = "layer"
    filter_fn: FilterFn | None = None
    criterion_kw: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list, init=False)  # (step, sparsity reached)
    _calls: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.frequency <= 0:
            raise ValueError(f"frequency must be positive, got {self.frequency}")
        if self.scope == "global" and isinstance(self.final_sparsity, Mapping):
            raise ValueError("global scope takes one float final_sparsity")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        fn = WEIGHT_CRITERIA.entry(self.criterion).obj if isinstance(self.criterion, str) else self.criterion
        unknown_keywords(f"AGPPruner criterion_kw for {self.criterion!r}", self.criterion_kw, criterion_options(fn))

    @property
    def end_step(self) -> int:
        return self.begin_step + self.total_steps

    def fraction(self, t: int) -> float:
        """How far along the cubic curve step ``t`` is: 0 at the start, 1 at the end."""
        return agp_sparsity(t, self.total_steps, 1.0, 0.0, self.begin_step)

    def sparsity_at(self, t: int) -> float | dict[str, float]:
        """The target at step ``t`` (one float, or one rate per layer for per-layer targets)."""
        f = self.fraction(t)
        s_i = self.initial_sparsity
        if isinstance(self.final_sparsity, Mapping):
            rates = layer_sparsities(self.model, self.final_sparsity, self.filter_fn)
            return {k: s_i + (r - s_i) * f for k, r in rates.items()}
        return s_i + (float(self.final_sparsity) - s_i) * f

    def due(self, t: int) -> bool:
        """Whether masks are updated at step ``t``."""
        if not self.begin_step <= t <= self.end_step:
            return False
        return (t - self.begin_step) % self.frequency == 0 or t == self.end_step

    def update(self, t: int) -> None:
        """Recompute and apply masks for step ``t`` (regardless of :meth:`due`)."""
        target = self.sparsity_at(t)
        scores = weight_scores(self.model, self.criterion, self.filter_fn, **self.criterion_kw)
        if self.scope == "layer" and not isinstance(target, dict):
            target = {k: target for k in scores}
        masks = masks_from_scores(scores, target, self.scope)
        old = get_masks(self.model)
        for k, m in masks.items():
            if k in old:
                masks[k] = m & old[k].to(m.device)
        apply_masks(self.model, masks)
        total = sum(m.numel() for m in masks.values())
        kept = sum(int(m.sum()) for m in masks.values())
        self.history.append((t, 1.0 - kept / total if total else 0.0))

    def step(self, t: int) -> bool:
        """Update masks if step ``t`` is due; returns whether it did."""
        if self.due(t):
            self.update(t)
            return True
        return False

    def __call__(self, trainer: Any = None, step: int | None = None) -> None:
        """Step callback, ``fn(trainer, step)`` as ``Trainer.add_step_callback`` calls it (``step`` = optimizer
        steps done, from 1); without ``step`` the pruner counts its own calls from 1."""
        self._calls += 1
        self.step(self._calls if step is None else int(step))
