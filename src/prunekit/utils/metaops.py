"""Fast shape functions for the ops whose meta kernels are slow Python decompositions.

Shape-only runs (the probe and the final plan check run models on the meta device) spend most of their
time in a handful of meta kernels that torch implements in Python, op by op: batch norm, layer norm,
addmm, softmax, GELU took 85-90% of a ResNet-50 or ViT-B/16 meta forward. ``FastMeta`` answers those ops
directly, with the size checks their CPU kernels make (a mismatch raises RuntimeError, naming the sizes),
and leaves every other op, and every call outside its narrow case (float32 only, contiguous inputs, all
tensors on meta), to torch. Outputs are new meta tensors with the shapes, dtype and (contiguous) strides
the CPU kernels give.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _plain(t) -> bool:
    """A meta float32 tensor the fast paths may answer for (others go to torch's own meta kernels)."""
    return isinstance(t, torch.Tensor) and t.device.type == "meta" and t.dtype == torch.float32


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    if input.dim() < 2:
        raise RuntimeError(f"batch norm expects an input of 2 or more dims, got {input.dim()}")
    c = input.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and t.numel() != c:
            raise RuntimeError(f"running batch norm: {name} has {t.numel()} elements, the input {c} channels "
                               f"(input shape {list(input.shape)})")
    return (torch.empty_like(input), input.new_empty((c,)), input.new_empty((c,)))  # as torch's meta kernel


def _layer_norm(input, normalized_shape, weight, bias, eps):
    ns = list(normalized_shape)
    k = len(ns)
    if k == 0:
        raise RuntimeError("layer norm: normalized_shape must have at least one dimension")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and list(t.shape) != ns:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of shape "
                               f"{t.shape} and normalized_shape = {ns}")
    if input.dim() < k or list(input.shape[-k:]) != ns:
        raise RuntimeError(f"layer norm: normalized_shape {ns} does not match the input's last dims "
                           f"(input shape {list(input.shape)})")
    stat_shape = list(input.shape[:-k]) + [1] * k
    return (input.new_empty(input.shape), input.new_empty(stat_shape), input.new_empty(stat_shape))


def _addmm(bias, mat1, mat2, beta=1, alpha=1):
    if mat1.dim() != 2 or mat2.dim() != 2:
        raise RuntimeError(f"addmm: expected 2-D matrices, got {mat1.dim()}-D and {mat2.dim()}-D")
    if mat1.shape[1] != mat2.shape[0]:
        raise RuntimeError(f"a and b must have same reduction dim, but got {list(mat1.shape)} X {list(mat2.shape)}.")
    out = (mat1.shape[0], mat2.shape[1])
    # the bias must expand to the output: at most 2 dims, each (aligned from the right) equal or 1
    if bias.dim() > 2 or any(b not in (1, o) for b, o in zip(reversed(bias.shape), reversed(out))):
        raise RuntimeError(f"addmm: a bias of shape {list(bias.shape)} does not expand to the output {list(out)}")
    return mat1.new_empty(out)


def _softmax(x, dim, dtype=None):
    if not -max(1, x.dim()) <= dim < max(1, x.dim()):
        raise IndexError(f"Dimension out of range (expected to be in range of [{-max(1, x.dim())}, "
                         f"{max(1, x.dim()) - 1}], but got {dim})")
    return x.new_empty(x.shape, dtype=dtype if dtype is not None else x.dtype)


def _gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return x.new_empty(x.shape)


# op -> (shape function, the positions of the tensor arguments that must be dense for it to answer)
FAST: dict[object, tuple[Callable, tuple[int, ...]]] = {
    aten.native_batch_norm.default: (_batch_norm, (0,)),
    aten.native_layer_norm.default: (_layer_norm, ()),  # its output is contiguous whatever the input's strides
    aten.addmm.default: (_addmm, ()),  # so is the product's
    aten._safe_softmax.default: (_softmax, (0,)),
    aten._softmax.default: (lambda x, dim, half_to_float: _softmax(x, dim), (0,)),
    aten.gelu.default: (_gelu, (0,)),
}


class FastMeta(TorchDispatchMode):
    """Inside this mode the ops of ``FAST`` run their shape functions when every tensor they get is a meta
    float32 tensor and the main ones are dense; everything else runs as usual.

    Example:
        >>> with torch.no_grad(), FastMeta():
        ...     out = meta_model(torch.empty(1, 3, 224, 224, device="meta"))  # doctest: +SKIP
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return fast_call(func, args, kwargs)


def fast_call(func, args=(), kwargs=None):
    """`func(*args, **kwargs)`, answered by its fast shape function where FastMeta would answer it (for a
    dispatch mode of one's own that runs ops on meta without stacking FastMeta under it)."""
    entry = FAST.get(func)
    if entry is not None:
        fn, dense = entry
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if tensors and all(_plain(t) for t in tensors) and all(
                isinstance(args[i], torch.Tensor) and _dense(args[i]) for i in dense if i < len(args)):
            return fn(*args, **(kwargs or {}))
    return func(*args, **(kwargs or {}))
