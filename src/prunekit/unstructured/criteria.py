"""Per-weight scores for unstructured pruning (higher = keep).

Every criterion maps ``(model, filter_fn, **kw)`` to ``dict[weight key, Tensor]`` with one score per
weight, shaped like the weight. Scores are computed on the *effective* weights (after any mask), so weights
already masked score lowest under magnitude, LAMP and OBD.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import unknown_keywords
from prunekit.registry import Registry
from prunekit.surgery.masks import FilterFn, target_layers, weight_param

Scores = dict[str, torch.Tensor]
Criterion = Callable[..., Scores]


def magnitude_scores(model: nn.Module, filter_fn: FilterFn | None = None) -> Scores:
    """|w| (Han et al. 2015)."""
    return {k: m.weight.detach().abs().clone() for k, m in target_layers(model, filter_fn)}


def lamp_layer(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of one layer (Lee et al. 2021): ``w_u^2 / sum_{|w_v| >= |w_u|} w_v^2`` (ties included).

    The largest weight of a layer scores 1, all scores lie in [0, 1], and order within a layer equals
    magnitude order; zero weights score 0 (also in an all-zero layer).
    """
    sq = weight.detach().reshape(-1).double() ** 2
    srt, order = sq.sort()
    suffix = srt.flip(0).cumsum(0).flip(0)            # suffix[i] = sum_{j >= i} srt[j]
    first = torch.searchsorted(srt, srt, side="left")  # first index of each value's tie group
    denom = suffix[first]
    score_sorted = torch.where(denom > 0, srt / denom.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    out = torch.empty_like(score_sorted).scatter_(0, order, score_sorted)
    return out.reshape(weight.shape).to(weight.dtype)


def lamp_scores(model: nn.Module, filter_fn: FilterFn | None = None) -> Scores:
    """LAMP scores for every selected layer; meant for global pruning (comparable across layers)."""
    return {k: lamp_layer(m.weight) for k, m in target_layers(model, filter_fn)}


def obd_scores(model: nn.Module, filter_fn: FilterFn | None = None, data: Iterable | None = None,
               num_batches: int = 16, loss_fn: Callable[..., torch.Tensor] | None = None,
               device: torch.device | str | None = None) -> Scores:
    """Optimal Brain Damage saliency ``h_kk * w_k^2 / 2`` (LeCun et al. 1990).

    The Hessian diagonal is approximated by the empirical Fisher: the mean over ``num_batches`` batches of
    the squared mini-batch gradient. ``data`` yields ``(inputs, targets)``; ``loss_fn`` defaults to
    cross-entropy. The model runs in eval mode and its ``.grad`` fields are left untouched.
    """
    if data is None:
        raise ValueError("obd criterion needs data: a loader yielding (inputs, targets)")
    loss_fn = loss_fn or F.cross_entropy
    layers = list(target_layers(model, filter_fn))
    params = [weight_param(m) for _, m in layers]
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    if device is None:
        device = params[0].device if params else "cpu"
    was_training = model.training
    model.eval()
    n = 0
    try:
        for inputs, targets in islice(data, num_batches):
            loss = loss_fn(model(inputs.to(device)), targets.to(device))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for f, g in zip(fisher, grads):
                if g is not None:
                    f += g.detach().double() ** 2
            n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("obd criterion: the data loader yielded no batches")
    return {k: (f / n * m.weight.detach().double() ** 2 / 2).to(m.weight.dtype)
            for (k, m), f in zip(layers, fisher)}


def random_scores(model: nn.Module, filter_fn: FilterFn | None = None, seed: int = 0) -> Scores:
    """Uniform random scores from a seeded generator (a baseline)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(m.weight.shape, generator=g).to(m.weight.device)
            for k, m in target_layers(model, filter_fn)}


WEIGHT_CRITERIA: Registry = Registry("weight criterion")
for _name, _fn in (("magnitude", magnitude_scores), ("lamp", lamp_scores), ("obd", obd_scores),
                   ("random", random_scores)):
    WEIGHT_CRITERIA.register(_name, _fn)


def criterion_options(criterion: Criterion) -> list[str]:
    """The keyword options a weight criterion takes (everything after model and filter_fn)."""
    params = list(inspect.signature(criterion).parameters.values())[2:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def weight_scores(model: nn.Module, criterion: str | Criterion = "magnitude",
                  filter_fn: FilterFn | None = None, **kw) -> Scores:
    """Scores from a criterion given by name (``WEIGHT_CRITERIA``) or as a callable; an option the criterion
    does not take raises TypeError naming it and listing the ones it does."""
    name = criterion if isinstance(criterion, str) else getattr(criterion, "__name__", "criterion")
    if isinstance(criterion, str):
        criterion = WEIGHT_CRITERIA.entry(criterion).obj
    unknown_keywords(f"weight criterion {name!r}", kw, criterion_options(criterion))
    return criterion(model, filter_fn, **kw)
