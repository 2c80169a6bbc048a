"""One-shot unstructured pruning: scores -> masks (layer-wise or global) -> ``apply_masks``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunekit.surgery.masks import FilterFn, apply_masks, per_layer
from prunekit.unstructured.criteria import Criterion, Scores, weight_scores

Sparsity = float | Mapping[str, float]


def _check(s: float, what: str) -> float:
    s = float(s)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"sparsity for {what} must lie in [0, 1], got {s}")
    return s


def layer_sparsities(model: nn.Module, sparsity: Sparsity, filter_fn: FilterFn | None = None) -> dict[str, float]:
    """Resolve ``sparsity`` to one rate per selected weight key.

    A float applies to all layers. A mapping is looked up by weight key (``"fc1.weight"``), then module
    name (``"fc1"``), then layer kind (``"conv"``/``"linear"``), then ``"default"``; layers with no entry
    are left dense (rate 0).
    """
    return {k: _check(v, k) for k, v in per_layer(model, sparsity, filter_fn, default=0.0).items()}


def _lowest(flat: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask (True = keep) that drops exactly ``count`` lowest entries (ties broken by position)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if count > 0:
        keep[torch.argsort(flat, stable=True)[:count]] = False
    return keep


def masks_from_scores(scores: Scores, sparsity: float | Mapping[str, float],
                      scope: str = "global") -> dict[str, torch.Tensor]:
    """Masks that remove the lowest-scoring weights.

    ``scope="global"``: one ranking across all layers, ``round(sparsity * total)`` weights removed
    (``sparsity`` a float). ``scope="layer"``: each layer loses ``round(rate * numel)`` weights, ``rate``
    from a float or a mapping keyed like ``scores``.
    """
    if scope == "global":
        if isinstance(sparsity, Mapping):
            raise ValueError("global scope takes one float sparsity; use scope='layer' for per-layer rates")
        s = _check(sparsity, "global")
        if not scores:
            return {}
        keys = list(scores)
        flat = torch.cat([scores[k].reshape(-1).float().cpu() for k in keys])
        keep = _lowest(flat, round(s * flat.numel()))
        out, start = {}, 0
        for k in keys:
            n = scores[k].numel()
            out[k] = keep[start:start + n].reshape(scores[k].shape).to(scores[k].device)
            start += n
        return out
    if scope == "layer":
        out = {}
        for k, sc in scores.items():
            s = _check(sparsity[k] if isinstance(sparsity, Mapping) else sparsity, k)
            out[k] = _lowest(sc.reshape(-1), round(s * sc.numel())).reshape(sc.shape)
        return out
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


def prune_unstructured(model: nn.Module, sparsity: Sparsity, criterion: str | Criterion = "magnitude",
                       scope: str = "global", filter_fn: FilterFn | None = None,
                       **criterion_kw: Any) -> dict[str, torch.Tensor]:
    """Score the selected weights, mask the lowest-scored ones and attach the masks (in place).

    Args:
        model: the model; masks are attached with ``torch.nn.utils.parametrize`` so training keeps them zero.
        sparsity: the fraction of weights to zero: a float, or (with ``scope="layer"``) a mapping by weight
            key, module name, layer kind ("conv", "linear") or "default", resolved by :func:`layer_sparsities`.
        criterion: "magnitude", "lamp", "obd" (needs ``data=``), "random", or a Criterion.
        scope: "global" (one threshold over every selected weight) or "layer" (each weight its own).
        filter_fn: ``filter_fn(module, name) -> bool`` choosing the layers (default: conv and linear weights).
        **criterion_kw: the criterion's options (``data=`` for OBD, ``seed=`` for random); unknown ones raise.

    Returns:
        The masks, ``{weight key: BoolTensor}`` (True = kept).

    Example:
        >>> masks = prune_unstructured(net, 0.8, scope="global")
        >>> round(sparsity(net), 2)
        0.8
    """
    scores = weight_scores(model, criterion, filter_fn, **criterion_kw)
    rates: float | dict[str, float] = sparsity if scope == "global" else layer_sparsities(model, sparsity, filter_fn)
    masks = masks_from_scores(scores, rates, scope)  # type: ignore[arg-type]
    apply_masks(model, masks)
    return masks
