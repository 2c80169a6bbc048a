"""Inference-ready copies of (pruned) models: BatchNorm folded into the convolution before it, and optionally
the channels-last memory format.

Folding removes one elementwise pass over every activation per BatchNorm and one operator call (in eager
PyTorch a pruned model pays the same per-operator overhead as the dense one for fewer MACs, so the fixed costs
weigh more after pruning). Channels-last lets oneDNN's convolutions skip layout reorders on CPU.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..config import Config
from ..utils.inputs import Inputs, call_model, output_tensors

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class InferenceError(ValueError):
    """A model or option that the inference preparation cannot work with; the message names it."""


@dataclass
class InferenceConfig(Config):
    """How `prepare_inference` rewrites a model.

    Args:
        fold_bn: fold every BatchNorm whose only input is a convolution (or Linear) used nowhere else into it.
        channels_last: convert 4-D parameters (and so the activations that follow them) to channels-last.
        atol: with example inputs, the largest allowed |original - prepared| output difference, relative to the
            largest output magnitude (at least 1): folding reorders float arithmetic, nothing more.
    """

    fold_bn: bool = True
    channels_last: bool = False
    atol: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("fold_bn", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise InferenceError(f"InferenceConfig.{name}={getattr(self, name)!r}: must be True or False")
        if isinstance(self.atol, bool) or not isinstance(self.atol, (int, float)) or self.atol < 0:
            raise InferenceError(f"InferenceConfig.atol={self.atol!r}: must be a number >= 0")


@dataclass
class InferenceReport:
    """What `prepare_inference` did: the folded (layer, norm) pairs, the memory format, and the output check
    (max_abs_diff is None without example inputs)."""

    folded: list[tuple[str, str]] = field(default_factory=list)
    channels_last: bool = False
    max_abs_diff: float | None = None
    scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["folded"] = [list(p) for p in self.folded]
        return d


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer name, batchnorm name) for every BatchNorm whose only input is a convolution or Linear layer
    whose output nothing else reads (each module called once), found with torch.fx on the module graph.

    A model torch.fx cannot trace raises an InferenceError naming it and the fx error.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - fx raises many error types on dynamic Python code
        raise InferenceError(f"fold_bn: torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); pass fold_bn=False") from e
    modules = dict(model.named_modules())
    # a module called more than once (weights shared between two places) is never folded: one fold would
    # change it for every call
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        src = node.args[0] if node.args else None
        layer = modules.get(src.target) if getattr(src, "op", None) == "call_module" else None
        foldable = isinstance(layer, _CONVS) or (isinstance(layer, nn.Linear)
                                                 and isinstance(modules[node.target], nn.BatchNorm1d))
        if (foldable and len(src.users) == 1 and modules[node.target].track_running_stats
                and calls[src.target] == 1 and calls[node.target] == 1):
            pairs.append((src.target, node.target))
    return pairs


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold, in place, every BatchNorm that directly follows a convolution (or Linear); the norm becomes
    nn.Identity. The model must be in eval mode (the running statistics are folded). Returns the folded pairs.

    Example:
        >>> pairs = fold_batchnorm(model.eval())
    """
    if model.training:
        raise InferenceError("fold_batchnorm needs the model in eval mode (it folds the running statistics)")
    if not any(isinstance(m, _NORMS) for m in model.modules()):
        return []
    pairs = conv_bn_pairs(model)
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        fuse = fuse_conv_bn_eval if isinstance(layer, _CONVS) else fuse_linear_bn_eval
        _set(model, layer_name, fuse(layer, bn))
        _set(model, bn_name, nn.Identity())
    return pairs


def prepare_inference(model: nn.Module, example_inputs: Inputs | None = None, config: InferenceConfig | None = None,
                      **options: Any) -> tuple[nn.Module, InferenceReport]:
    """An inference-ready copy of ``model`` (eval mode; the original is not touched) and what was done.

    Args:
        model: the (pruned) model.
        example_inputs: when given, the copy's outputs are compared with the original's and an InferenceError
            is raised beyond ``config.atol`` (relative to the largest output magnitude, at least 1).
        config: an InferenceConfig; or its fields as keywords (fold_bn=, channels_last=, atol=).

    Returns:
        (prepared copy, InferenceReport).

    Example:
        >>> fast, rep = pk.prepare_inference(pruned, torch.randn(1, 3, 224, 224), channels_last=True)
        >>> len(rep.folded), rep.max_abs_diff
    """
    config = InferenceConfig.resolve("prepare_inference()", config, options)
    if not isinstance(model, nn.Module):
        raise InferenceError(f"prepare_inference expects a torch.nn.Module, got {type(model).__name__}")
    net = copy.deepcopy(model).eval()
    report = InferenceReport(channels_last=config.channels_last)
    if config.fold_bn:
        report.folded = fold_batchnorm(net)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if example_inputs is not None:
        report.max_abs_diff, report.scale = _compare(model, net, example_inputs)
        if report.max_abs_diff > config.atol * report.scale:
            raise InferenceError(f"prepare_inference: the prepared {type(model).__name__} differs from the original "
                                 f"by {report.max_abs_diff:.3g} > atol {config.atol:g} x {report.scale:.3g}")
    return net, report


def _compare(original: nn.Module, prepared: nn.Module, example_inputs: Inputs) -> tuple[float, float]:
    """(largest |difference| over all tensor outputs, max(1, largest |original output|))."""
    was_training = original.training
    original.eval()
    try:
        with torch.inference_mode():
            ref = output_tensors(call_model(original, example_inputs))
            new = output_tensors(call_model(prepared, example_inputs))
    finally:
        original.train(was_training)
    pairs = list(zip(ref, new))
    if len(ref) != len(new) or not pairs:
        raise InferenceError(f"prepare_inference: the prepared model gives {len(new)} outputs, the original "
                             f"{len(ref)} (tensors compared: {len(pairs)})")
    diff = max(float((a.float() - b.float()).abs().max()) if a.numel() else 0.0 for a, b in pairs)
    scale = max([1.0] + [float(a.float().abs().max()) for a, _ in pairs if a.numel()])
    return diff, scale


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
