"""The calibration-based transformer methods, registered by name in CALIBRATION_METHODS
(``run_calibration_method("wanda", model, loader, sparsity=0.5)``).

They have a registry of their own, next to prunekit.methods.METHODS: the structured channel methods there all
take a MethodConfig (a PlanConfig and a Recovery) and are tested as such on image models, while these take
calibration configs (sparsity / N:M, ratio, blocks) and need a model with Linear layers.

Each takes the usual ``(model, train_loader, val_loader, example_inputs, config=None, **options)``; the first
``calib_batches`` batches of ``train_loader`` are the calibration set (a dict batch is used as keyword inputs,
a tuple batch contributes its first element). Returns a MethodResult: unstructured methods have an empty plan
(masks instead), ``flap`` the plan it applied, ``depth`` an empty plan and the removed blocks in extras.
A whole run on a pretrained model (load, calibrate, prune, distil, measure, save, report) is
prunekit.workflow.run_hf_workflow, which looks the method and its config type up here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any, Iterable

from torch import nn

from prunekit.config import Config, check_int
from prunekit.graph.plan import PruningPlan
from prunekit.measure.counting import count_macs, count_params
from prunekit.methods.result import MethodResult
from prunekit.registry import Registry

from .calibration import as_call
from .depth import DepthConfig, prune_depth
from .sparse import MagnitudeConfig, SparseGPTConfig, WandaConfig, prune_sparse
from .structured import StructuredConfig, prune_structured


CALIBRATION_METHODS: Registry = Registry("calibration method")


def register_method(name: str, config: type):
    """Register ``fn(model, train_loader, val_loader, example_inputs, config=None, **options)`` as ``name``."""
    def deco(fn):
        CALIBRATION_METHODS.register(name, fn, config=config)
        fn.config_type = config
        return fn
    return deco


def list_calibration_methods() -> list[str]:
    """Names of the registered calibration methods, sorted."""
    return CALIBRATION_METHODS.names()


def run_calibration_method(name: str, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                           example_inputs: Any = None, config: Any = None, **options: Any) -> MethodResult:
    """Run the calibration method registered as ``name``.

    Args:
        name: one of list_calibration_methods() (an unknown name lists the valid ones).
        model: pruned in place.
        train_loader: its first ``calib_batches`` batches calibrate.
        val_loader: unused by these one-shot methods (the common signature).
        example_inputs: inputs for counting MACs (default: the first calibration batch).
        config: the method's config instance, or None.
        **options: that config's fields as keywords (unknown ones raise TypeError).

    Returns:
        The method's MethodResult.

    Example:
        >>> model, res = run_calibration_method("wanda", model, loader, sparsity=0.5, calib_batches=8)
    """
    fn = CALIBRATION_METHODS.entry(name).obj
    return fn(model, train_loader, val_loader, example_inputs, config, **options)


@dataclass
class Calibrated(Config):
    """How many training batches calibrate, mixed in first (``class WandaMethodConfig(Calibrated,
    WandaConfig)``): its ``__post_init__`` runs the library config's checks, then its own."""

    calib_batches: int = 8

    def __post_init__(self) -> None:
        post_init = getattr(super(), "__post_init__", None)
        if post_init is not None:
            post_init()
        check_int(type(self).__name__, "calib_batches", self.calib_batches, lo=1)


@dataclass
class MagnitudeMethodConfig(Calibrated, MagnitudeConfig):
    """MagnitudeConfig + calib_batches."""


@dataclass
class WandaMethodConfig(Calibrated, WandaConfig):
    """WandaConfig + calib_batches."""


@dataclass
class SparseGPTMethodConfig(Calibrated, SparseGPTConfig):
    """SparseGPTConfig + calib_batches."""


@dataclass
class FlapMethodConfig(Calibrated, StructuredConfig):
    """StructuredConfig + calib_batches."""


@dataclass
class DepthMethodConfig(Calibrated, DepthConfig):
    """DepthConfig + calib_batches."""


def calibration_batches(loader: Iterable, n: int) -> list[Any]:
    """The first ``n`` batches of ``loader`` as model inputs (dicts kept, (inputs, targets) -> inputs)."""
    out = []
    for b in islice(loader, n):
        out.append(b[0] if isinstance(b, (tuple, list)) else b)
    if not out:
        raise ValueError("the calibration loader yielded no batch")
    return out


def _split(cfg: Any, base: type) -> Any:
    """The library config (without calib_batches) inside a method config."""
    return base(**{f.name: getattr(cfg, f.name) for f in fields(base)})


def _result(name: str, model: nn.Module, plan: PruningPlan, example: Any, before: tuple[int, int],
            cfg: Any, seconds: float, extras: dict[str, Any]) -> MethodResult:
    args, kwargs = as_call(example)
    macs = count_macs(model, args[0] if args and not kwargs else kwargs)
    params = count_params(model)
    widths = {d.name: {"size": d.size, "kept": len(d.kept)} for d in plan.decisions}
    return MethodResult(model=model, plan=plan, method=name, macs_kept=macs / max(before[0], 1),
                        params_kept=params / max(before[1], 1), base={"macs": before[0], "params": before[1]},
                        pruned={"macs": macs, "params": params}, widths=widths,
                        timings={"prune": seconds, "total": seconds}, history={}, config=cfg, extras=extras)


def _run(name: str, cls: type, base: type, model, train_loader, example_inputs, config, options, prune):
    cfg = cls.resolve(f"{name}()", config, options)
    batches = calibration_batches(train_loader, cfg.calib_batches)
    example = batches[0] if example_inputs is None else example_inputs
    args, kwargs = as_call(example)
    before = (count_macs(model, args[0] if args and not kwargs else kwargs), count_params(model))
    start = time.perf_counter()
    plan, extras = prune(model, batches, _split(cfg, base))
    return _result(name, model, plan, example, before, cfg, time.perf_counter() - start, extras)


def _sparse(method: str):
    def prune(model, batches, cfg):
        rep = prune_sparse(model, batches, method, cfg)
        return PruningPlan(meta={"method": method}), {"sparsity": rep.sparsity, "layers": rep.layers}
    return prune


@register_method("magnitude", MagnitudeMethodConfig)
def magnitude(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
              example_inputs: Any = None, config: MagnitudeMethodConfig | None = None, **options: Any) -> MethodResult:
    """Magnitude masks on the block Linears (the calibration-free baseline of Wanda / SparseGPT).

    Args:
        model: pruned in place (masks stay applied).
        train_loader: its first ``calib_batches`` batches run the same block pass as the other methods.
        val_loader: unused by this one-shot method (accepted for the common signature).
        example_inputs: inputs for counting (default: the first calibration batch).
        config: MagnitudeMethodConfig, or its fields as keywords (sparsity, nm, scope, include, exclude).

    Returns:
        MethodResult (empty plan; extras: sparsity, per-layer sparsity).

    Example:
        >>> model, res = run_calibration_method("magnitude", model, loader, sparsity=0.5)
    """
    return _run("magnitude", MagnitudeMethodConfig, MagnitudeConfig, model, train_loader, example_inputs, config,
                options, _sparse("magnitude"))


@register_method("wanda", WandaMethodConfig)
def wanda(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
          config: WandaMethodConfig | None = None, **options: Any) -> MethodResult:
    """Wanda (|W| * ||X||, per output row or N:M) on the block Linears, calibrated block by block.

    Args:
        model: pruned in place (masks stay applied).
        train_loader: its first ``calib_batches`` batches calibrate.
        val_loader: unused (common signature).
        example_inputs: inputs for counting (default: the first calibration batch).
        config: WandaMethodConfig, or its fields as keywords (sparsity, nm, scope, include, exclude).

    Returns:
        MethodResult (empty plan; extras: sparsity, per-layer sparsity).

    Example:
        >>> model, res = run_calibration_method("wanda", model, loader, nm="2:4", calib_batches=8)
    """
    return _run("wanda", WandaMethodConfig, WandaConfig, model, train_loader, example_inputs, config, options,
                _sparse("wanda"))


@register_method("sparsegpt", SparseGPTMethodConfig)
def sparsegpt(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
              example_inputs: Any = None, config: SparseGPTMethodConfig | None = None, **options: Any) -> MethodResult:
    """SparseGPT (OBS update, damping, blocked lazy updates) on the block Linears.

    Args:
        model: pruned in place (masks stay applied, kept weights updated).
        train_loader: its first ``calib_batches`` batches calibrate.
        val_loader: unused (common signature).
        example_inputs: inputs for counting (default: the first calibration batch).
        config: SparseGPTMethodConfig, or its fields as keywords (sparsity, nm, damp, block_size, ...).

    Returns:
        MethodResult (empty plan; extras: sparsity, per-layer sparsity).

    Example:
        >>> model, res = run_calibration_method("sparsegpt", model, loader, sparsity=0.5, damp=0.01)
    """
    return _run("sparsegpt", SparseGPTMethodConfig, SparseGPTConfig, model, train_loader, example_inputs, config,
                options, _sparse("sparsegpt"))


@register_method("flap", FlapMethodConfig)
def flap(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
         config: FlapMethodConfig | None = None, **options: Any) -> MethodResult:
    """FLAP-like structured width pruning (heads incl. GQA groups, MLP neurons, bias compensation).

    Args:
        model: pruned in place (physically smaller).
        train_loader: its first ``calib_batches`` batches calibrate.
        val_loader: unused (common signature).
        example_inputs: inputs for counting (default: the first calibration batch).
        config: FlapMethodConfig, or its fields as keywords (ratio, importance, allocation, ...).

    Returns:
        MethodResult with the plan applied.

    Example:
        >>> model, res = run_calibration_method("flap", model, loader, ratio=0.5)
    """
    def prune(m, batches, cfg):
        rep = prune_structured(m, batches, cfg)
        return rep.plan, {"report": {k: v for k, v in rep.to_dict().items() if k != "plan"}}
    return _run("flap", FlapMethodConfig, StructuredConfig, model, train_loader, example_inputs, config, options,
                prune)


@register_method("depth", DepthMethodConfig)
def depth(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
          config: DepthMethodConfig | None = None, **options: Any) -> MethodResult:
    """Depth pruning by block influence (ShortGPT-like): remove the least influential blocks.

    Args:
        model: pruned in place (blocks removed, config updated).
        train_loader: its first ``calib_batches`` batches calibrate.
        val_loader: unused (common signature).
        example_inputs: inputs for counting (default: the first calibration batch).
        config: DepthMethodConfig, or its fields as keywords (remove, keep_first, keep_last).

    Returns:
        MethodResult (empty plan; extras: influence, removed).

    Example:
        >>> model, res = run_calibration_method("depth", model, loader, remove=2)
    """
    def prune(m, batches, cfg):
        rep = prune_depth(m, batches, cfg)
        return PruningPlan(meta={"method": "depth"}), {"influence": rep.influence, "removed": rep.removed}
    return _run("depth", DepthMethodConfig, DepthConfig, model, train_loader, example_inputs, config, options, prune)


__all__ = ["CALIBRATION_METHODS", "Calibrated", "DepthMethodConfig", "FlapMethodConfig", "MagnitudeMethodConfig",
           "SparseGPTMethodConfig", "WandaMethodConfig", "calibration_batches", "depth", "flap",
           "list_calibration_methods", "magnitude", "run_calibration_method", "sparsegpt", "wanda"]
