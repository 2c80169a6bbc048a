"""Whole pruning procedures. Each is `fn(model, train_loader, val_loader, example_inputs, config=None,
**options) -> MethodResult`; the model is pruned in place. A method is configured by one config dataclass
(`OneshotConfig`, `AdmmConfig`, ...: a PlanConfig, a Recovery and its own knobs), or by keywords that build
it (unknown keywords raise TypeError listing the valid ones).

`run_method(name, ...)` picks one from `METHODS` by name. Deep Compression (unstructured, its own result type)
lives in `prunekit.methods.deep_compression`.
"""
from __future__ import annotations

from typing import Any

from .admm import AdmmConfig, admm
from .coarse import CoarseConfig, coarse
from .common import PlanComposer, reinitialize, shrink_graph
from .config import MethodConfig, Recovery
from .oneshot import IterativeConfig, OneshotConfig, SRRMethodConfig, iterative, oneshot, srr
from .registry import METHODS, register_method
from .regularized import GroupLassoConfig, SlimmingConfig, group_lasso, slimming
from .result import MethodResult


def list_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    return METHODS.names()


def run_method(name: str, model, train_loader, val_loader=None, example_inputs=None, config: Any = None,
               **options: Any) -> MethodResult:
    """Run the method registered as `name` with `config` (its config type) or keyword options.

    Args:
        name: a registered method (`list_methods()`; an unknown name lists the valid ones).
        model: the model, pruned in place.
        train_loader: training batches (scoring, regularisation, recovery).
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: an instance of the method's config type (`METHODS.config_type(name)`), or None.
        **options: that config's fields as keywords; an unknown one raises TypeError listing the valid ones.

    Returns:
        The method's MethodResult (`model, result = run_method(...)` unpacks it).

    Example:
        >>> model, res = run_method("oneshot", net, loader, target={"macs": 0.5}, finetune_epochs=1)
        >>> res.method, res.macs_kept <= 0.5
        ('oneshot', True)
    """
    fn = METHODS.entry(name).obj
    return fn(model, train_loader, val_loader, example_inputs, config, **options)


__all__ = ["METHODS", "AdmmConfig", "CoarseConfig", "GroupLassoConfig", "IterativeConfig", "MethodConfig",
           "MethodResult", "OneshotConfig", "PlanComposer", "Recovery", "SRRMethodConfig", "SlimmingConfig", "admm",
           "coarse", "group_lasso", "iterative", "list_methods", "oneshot", "register_method", "reinitialize",
           "run_method", "shrink_graph", "slimming", "srr"]
