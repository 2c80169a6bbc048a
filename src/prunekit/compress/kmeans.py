"""One-dimensional k-means (Lloyd) in torch, for weight sharing."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KMeansResult:
    centroids: torch.Tensor   # [k'] sorted ascending, k' <= k (fewer when there are fewer distinct values)
    labels: torch.Tensor      # [n] int64 index into centroids
    inertia: float            # sum of squared distances to the assigned centroid
    iterations: int


def assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (``centroids`` sorted ascending), via midpoints: O(n log k)."""
    mid = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values, mid)


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 50, init: str = "linear", seed: int = 0) -> KMeansResult:
    """Cluster ``values`` (any shape, flattened) into at most ``k`` centroids.

    ``init="linear"`` spaces centroids evenly between min and max (Han et al. 2016: keeps the rare large
    weights represented); ``"random"`` picks distinct data points. Empty clusters are re-seeded on the
    worst-served value. With no more distinct values than ``k`` the distinct values themselves are the
    centroids, so the result is exact (lossless). Computation is in float64.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = values.detach().reshape(-1).double()
    if x.numel() == 0:
        return KMeansResult(x.new_zeros(0), torch.zeros(0, dtype=torch.long), 0.0, 0)
    distinct = torch.unique(x)
    if distinct.numel() <= k:
        labels = torch.searchsorted(distinct, x)
        return KMeansResult(distinct, labels, 0.0, 0)
    if init == "linear":
        c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    elif init == "random":
        g = torch.Generator().manual_seed(seed)
        c = distinct[torch.randperm(distinct.numel(), generator=g)[:k]].sort().values
    else:
        raise ValueError(f"init must be 'linear' or 'random', got {init!r}")
    labels = assign(x, c)
    it = 0
    for it in range(1, iters + 1):
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            err = (x - new[labels]).abs()
            worst = err.topk(min(empty.numel(), x.numel())).indices
            new[empty[: worst.numel()]] = x[worst]
        c = new.sort().values
        new_labels = assign(x, c)
        if torch.equal(new_labels, labels) and not empty.numel():
            break
        labels = new_labels
    inertia = float(((x - c[labels]) ** 2).sum())
    return KMeansResult(c, labels, inertia, it)
