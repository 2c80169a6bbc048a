"""Weight sharing (Han et al. 2016): per-layer k-means codebooks with trainable centroids.

:func:`share_weights` clusters each layer's non-zero weights into ``2**bits`` centroids and registers a
:class:`WeightSharing` parametrization: the layer then computes ``where(mask, codebook[index], 0)``. The
codebook is an ``nn.Parameter``, so ordinary training fine-tunes the centroids, and autograd gives each
centroid the *sum* of the gradients of the weights in its cluster (the paper's shared-gradient update);
pruned weights stay exactly zero.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.compress.kmeans import kmeans_1d
from prunekit.surgery.masks import FilterFn, get_masks, own_class, per_layer, remove_mask, target_layers


class WeightSharing(nn.Module):
    """``weight -> where(mask, codebook[index], 0)``; the stored weight itself is ignored."""

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook.to(torch.float32))
        self.register_buffer("index", index.to(torch.long))
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        shared = self.codebook[self.index].to(weight.dtype)
        return torch.where(self.mask, shared, torch.zeros((), dtype=weight.dtype, device=weight.device))


@dataclass
class SharingInfo:
    """What :func:`share_weights` did to one layer."""

    bits: int
    clusters: int        # centroids actually used (<= 2**bits)
    nonzero: int
    numel: int
    mse: float           # mean squared quantisation error over the non-zero weights


def _sharing(module: nn.Module) -> WeightSharing | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return next((p for p in module.parametrizations.weight if isinstance(p, WeightSharing)), None)


def share_weights(model: nn.Module, bits: int | Mapping[str, int], filter_fn: FilterFn | None = None,
                  iters: int = 50, init: str = "linear") -> dict[str, SharingInfo]:
    """Replace each selected layer's weights by a k-means codebook of ``2**bits`` entries (in place).

    ``bits`` is an int or a per-layer mapping (``{"conv": 8, "linear": 5}``, keys as in
    :func:`prunekit.surgery.masks.per_layer`; layers without an entry are left alone). The sparsity
    pattern is the current mask, else the weight's non-zeros; masks are folded in.
    """
    infos: dict[str, SharingInfo] = {}
    resolved = per_layer(model, bits, filter_fn)
    for key, module in list(target_layers(model, filter_fn)):
        b = resolved.get(key)
        if b is None:
            continue
        if not 1 <= int(b) <= 16:
            raise ValueError(f"bits for {key!r} must be in 1..16, got {b}")
        if _sharing(module) is not None:
            raise RuntimeError(f"{key} already shares weights; call unshare_weights first")
        w = module.weight.detach()
        masks = get_masks(module)
        mask = masks["weight"] if "weight" in masks else w != 0
        remove_mask(module, "weight", make_permanent=True)
        km = kmeans_1d(w[mask], 2 ** int(b), iters=iters, init=init)
        index = torch.zeros(w.shape, dtype=torch.long, device=w.device)
        index[mask] = km.labels.to(w.device)
        codebook = km.centroids.to(torch.float32)
        if codebook.numel() == 0:
            codebook = torch.zeros(1)
        parametrize.register_parametrization(module, "weight", WeightSharing(codebook.to(w.device), index, mask))
        nnz = int(mask.sum())
        err = float(((module.weight.detach()[mask].double() - w[mask].double()) ** 2).mean()) if nnz else 0.0
        infos[key] = SharingInfo(int(b), int(km.centroids.numel()), nnz, w.numel(), err)
    return infos


def codebooks(model: nn.Module) -> dict[str, WeightSharing]:
    """The weight-sharing parametrizations of the model, keyed by weight key."""
    return {(f"{n}.weight" if n else "weight"): p for n, m in model.named_modules() if (p := _sharing(m)) is not None}


def unshare_weights(model: nn.Module) -> nn.Module:
    """Bake the shared weights into plain dense weights (in place); values are bit-identical."""
    for _, module in list(model.named_modules()):
        if _sharing(module) is not None:
            own_class(module)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the model would have without parametrizations: effective weights under their
    plain keys (``"fc1.weight"``), masks and codebooks dropped."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if "parametrizations" in parts:
            i = parts.index("parametrizations")
            module_name, tensor_name = ".".join(parts[:i]), parts[i + 1]
            key = f"{module_name}.{tensor_name}" if module_name else tensor_name
            if key not in out:
                out[key] = getattr(model.get_submodule(module_name), tensor_name).detach()
            continue
        out[k] = v
    return out
