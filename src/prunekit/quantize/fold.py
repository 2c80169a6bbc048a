"""Folding BatchNorm into the convolution before it, so int8 sees one fused weight per channel."""
from __future__ import annotations

from torch import nn
import torch.fx
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .config import QuantizeError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, batchnorm name) for every BatchNorm whose only input is a convolution used nowhere else.

    Found with torch.fx on the module graph; a model torch.fx cannot trace raises a QuantizeError (pass
    fold_bn=False: the ONNX exporter folds eval-mode Conv+BatchNorm itself).
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - fx raises many error types on dynamic Python code
        raise QuantizeError(f"fold_bn: torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); pass fold_bn=False") from e
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        src = node.args[0] if node.args else None
        if (getattr(src, "op", None) == "call_module" and isinstance(modules.get(src.target), _CONVS)
                and len(src.users) == 1):
            pairs.append((src.target, node.target))
    return pairs


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold, in place, every BatchNorm that directly follows a convolution; the norm becomes nn.Identity.

    The model must be in eval mode (the running statistics are folded). Returns the folded (conv, bn) pairs.

    Example:
        >>> pairs = fold_batchnorm(model.eval())
    """
    if model.training:
        raise QuantizeError("fold_batchnorm needs the model in eval mode (it folds the running statistics)")
    if not any(isinstance(m, _NORMS) for m in model.modules()):
        return []
    pairs = conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _set(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_name, nn.Identity())
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
