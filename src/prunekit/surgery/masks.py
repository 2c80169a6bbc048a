"""Weight masks kept with ``torch.nn.utils.parametrize``: unstructured and N:M.

A mask is a bool tensor shaped like the weight; ``apply_masks`` registers a :class:`MaskParametrization`
so the module always sees ``where(mask, weight, 0)``. Masked entries therefore stay exactly zero through
any number of optimizer steps (their gradient is zero and the forward ignores the stored value), and
``remove_masks`` bakes them in at the end. Masks are keyed by the weight's state_dict key in the
*unparametrized* model (``"fc1.weight"``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

FilterFn = Callable[[nn.Module, str], bool]

_WEIGHT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)


def default_filter(module: nn.Module, name: str) -> bool:
    """Conv and linear layers (their ``weight``)."""
    return isinstance(module, _WEIGHT_TYPES)


def skip_classifier(model: nn.Module, filter_fn: FilterFn | None = None) -> FilterFn:
    """A filter like ``filter_fn`` that leaves out the last layer it selects (the classifier)."""
    base = filter_fn or default_filter
    chosen = [n for n, m in model.named_modules() if base(m, n)]
    last = chosen[-1] if chosen else None
    return lambda module, name: base(module, name) and name != last


def _key(module_name: str, tensor_name: str = "weight") -> str:
    return f"{module_name}.{tensor_name}" if module_name else tensor_name


def target_layers(model: nn.Module, filter_fn: FilterFn | None = None) -> Iterator[tuple[str, nn.Module]]:
    """(weight key, module) for every module ``filter_fn`` selects that has a ``weight``."""
    filter_fn = filter_fn or default_filter
    for name, module in model.named_modules():
        if filter_fn(module, name) and isinstance(getattr(module, "weight", None), torch.Tensor):
            yield _key(name), module


def per_layer(model: nn.Module, value: Any, filter_fn: FilterFn | None = None, default: Any = None) -> dict[str, Any]:
    """Resolve a setting to one value per selected weight key.

    A non-mapping ``value`` applies to every layer. A mapping is looked up by weight key (``"fc1.weight"``),
    then module name (``"fc1"``), then layer kind (``"conv"``/``"linear"``), then ``"default"``, then
    ``default``.
    """
    out: dict[str, Any] = {}
    for key, module in target_layers(model, filter_fn):
        if not isinstance(value, Mapping):
            out[key] = value
            continue
        out[key] = default
        for k in (key, key.rpartition(".")[0], layer_kind(module), "default"):
            if k in value:
                out[key] = value[k]
                break
    return out


def layer_kind(module: nn.Module) -> str:
    """"conv", "linear" or the lower-case class name: the key of per-layer-type settings."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.modules.conv._ConvNd,)):
        return "conv"
    return type(module).__name__.lower()


def weight_param(module: nn.Module, tensor_name: str = "weight") -> torch.Tensor:
    """The leaf tensor that holds the stored weight (the parametrization's ``original`` if any)."""
    if parametrize.is_parametrized(module, tensor_name):
        return getattr(module.parametrizations, tensor_name).original
    return getattr(module, tensor_name)


class MaskParametrization(nn.Module):
    """``weight -> where(mask, weight, 0)``; the mask is a bool buffer (saved in the state_dict)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool, copy=True))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def _find(module: nn.Module, tensor_name: str, kind: type[nn.Module]) -> nn.Module | None:
    if not parametrize.is_parametrized(module, tensor_name):
        return None
    for p in getattr(module.parametrizations, tensor_name):
        if isinstance(p, kind):
            return p
    return None


def _resolve(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    module_name, _, tensor_name = key.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError as e:
        raise KeyError(f"mask key {key!r}: no module {module_name!r} in the model") from e
    if not isinstance(getattr(module, tensor_name, None), torch.Tensor):
        raise KeyError(f"mask key {key!r}: module {module_name!r} has no tensor {tensor_name!r}")
    return module, tensor_name


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask the weights named in ``masks`` (in place, returns the model).

    A weight that already has a mask gets the new one (replaced, not combined). The stored values
    under the mask are zeroed too, so optimizer state cannot make them reappear when masks are removed.
    """
    for key, mask in masks.items():
        module, tensor_name = _resolve(model, key)
        current = getattr(module, tensor_name)
        if tuple(mask.shape) != tuple(current.shape):
            raise ValueError(f"mask for {key!r} has shape {tuple(mask.shape)}, weight has {tuple(current.shape)}")
        mask = mask.to(device=current.device, dtype=torch.bool)
        existing = _find(module, tensor_name, MaskParametrization)
        if existing is None:
            parametrize.register_parametrization(module, tensor_name, MaskParametrization(mask))
        else:
            existing.mask.copy_(mask)
        with torch.no_grad():
            weight_param(module, tensor_name).masked_fill_(~mask, 0.0)
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks currently applied, keyed like ``apply_masks`` expects."""
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name in module.parametrizations.keys():
            p = _find(module, tensor_name, MaskParametrization)
            if p is not None:
                out[_key(name, tensor_name)] = p.mask.clone()
    return out


def own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before removing a parametrization.

    ``copy.deepcopy`` of a parametrized module shares its generated class, and
    ``parametrize.remove_parametrizations`` deletes the property from that class, which would break the
    other copy; a private subclass of the plain class makes removal local to ``module``.
    """
    cls = module.__class__
    if parametrize.is_parametrized(module):
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def remove_mask(module: nn.Module, tensor_name: str = "weight", make_permanent: bool = True) -> bool:
    """Remove the mask of one tensor of ``module``; returns whether it had one."""
    if _find(module, tensor_name, MaskParametrization) is None:
        return False
    if len(getattr(module.parametrizations, tensor_name)) > 1:
        raise RuntimeError(f"{type(module).__name__}.{tensor_name} has other parametrizations besides its mask; "
                           "remove those first")
    own_class(module)
    parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=make_permanent)
    return True


def remove_masks(model: nn.Module, make_permanent: bool = True) -> nn.Module:
    """Remove every mask; ``make_permanent`` keeps the masked (zeroed) weights, else the stored ones."""
    for _, module in list(model.named_modules()):
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                remove_mask(module, tensor_name, make_permanent)
    return model


def sparsity(model: nn.Module, filter_fn: FilterFn | None = None) -> float:
    """Fraction of exact zeros over the selected weights (effective, i.e. after masks)."""
    zeros = total = 0
    for _, module in target_layers(model, filter_fn):
        w = module.weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total if total else 0.0


# --- N:M -------------------------------------------------------------------------------------------

def nm_mask(weight: torch.Tensor, n: int, m: int, scores: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the ``n`` highest-scoring of every ``m`` consecutive weights along the input dimension.

    The weight is viewed as ``[out, in * kernel...]`` (the GEMM reduction axis, as sparse tensor cores
    expect); that length must be divisible by ``m``. ``scores`` default to ``|weight|``.
    """
    if not 0 <= n <= m or m <= 0:
        raise ValueError(f"N:M needs 0 <= N <= M and M > 0, got {n}:{m}")
    if weight.ndim < 2:
        raise ValueError(f"N:M masks need a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    s = (weight.detach().abs() if scores is None else scores.detach()).reshape(weight.shape[0], -1)
    if s.shape[1] % m:
        raise ValueError(f"input length {s.shape[1]} of weight {tuple(weight.shape)} is not divisible by M={m}")
    groups = s.reshape(s.shape[0], -1, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


def nm_masks(model: nn.Module, n: int = 2, m: int = 4, filter_fn: FilterFn | None = None,
             skip_incompatible: bool = True) -> dict[str, torch.Tensor]:
    """Magnitude N:M masks for every selected layer; layers whose input length is not a multiple of
    ``m`` are skipped (or raise, with ``skip_incompatible=False``)."""
    out: dict[str, torch.Tensor] = {}
    for key, module in target_layers(model, filter_fn):
        w = module.weight
        if w.ndim < 2 or (w[0].numel() % m and skip_incompatible):
            continue
        out[key] = nm_mask(w, n, m)
    return out


def prune_nm(model: nn.Module, n: int = 2, m: int = 4, filter_fn: FilterFn | None = None) -> dict[str, torch.Tensor]:
    """Apply magnitude N:M masks (in place) and return them."""
    masks = nm_masks(model, n, m, filter_fn)
    apply_masks(model, masks)
    return masks


def semi_structured_supported() -> bool:
    """True where ``torch.sparse.to_sparse_semi_structured`` can run: CUDA with compute capability >= 8.0."""
    if not torch.cuda.is_available() or not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return False
    return torch.cuda.get_device_capability() >= (8, 0)


def to_semi_structured(model: nn.Module, filter_fn: FilterFn | None = None) -> list[str]:
    """Swap 2:4-masked ``nn.Linear`` weights (CUDA, fp16/bf16) for semi-structured sparse tensors.

    Masks are made permanent first. Returns the converted weight keys. Raises ``RuntimeError`` where the
    hardware or the build lacks support (check :func:`semi_structured_supported`).
    """
    if not semi_structured_supported():
        raise RuntimeError("to_semi_structured needs CUDA with compute capability >= 8.0 and "
                           "torch.sparse.to_sparse_semi_structured")
    remove_masks(model, make_permanent=True)
    converted: list[str] = []
    for key, module in target_layers(model, filter_fn):
        w = module.weight
        if not isinstance(module, nn.Linear) or not w.is_cuda or w.dtype not in (torch.float16, torch.bfloat16):
            continue
        if w.shape[1] % 4 or not bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all()):
            continue  # not a 2:4 pattern
        module.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(w.detach()), requires_grad=False)
        converted.append(key)
    return converted
