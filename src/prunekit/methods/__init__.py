"""Whole pruning procedures. Each is `fn(model, train_loader, val_loader, example_inputs, *, target= or ratio=,
...) -> (pruned model, report dict)`; the model is pruned in place. Every method takes the Recovery options
(finetune_epochs, lr, distill, temperature, distill_weight, from_scratch, scratch_epochs, ...).

`run_method(name, ...)` picks one from `METHODS` by name. Deep Compression (unstructured, its own result type)
lives in `prunekit.methods.deep_compression`.
"""
from __future__ import annotations

from typing import Any, Callable

from .admm import admm
from .coarse import coarse
from .common import PlanComposer, Recovery, reinitialize, shrink_graph
from .oneshot import iterative, oneshot, srr
from .regularized import group_lasso, slimming

METHODS: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {
    "oneshot": oneshot, "iterative": iterative, "coarse": coarse, "admm": admm, "slimming": slimming,
    "group_lasso": group_lasso, "srr": srr,
}


def list_methods() -> list[str]:
    return sorted(METHODS)


def run_method(name: str, model, train_loader, val_loader=None, example_inputs=None, **kwargs: Any):
    """Run the method registered as `name`; returns (pruned model, report dict)."""
    key = name.strip().lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(list_methods())}")
    return METHODS[key](model, train_loader, val_loader, example_inputs, **kwargs)


__all__ = ["METHODS", "PlanComposer", "Recovery", "admm", "coarse", "group_lasso", "iterative", "list_methods",
           "oneshot", "reinitialize", "run_method", "shrink_graph", "slimming", "srr"]
