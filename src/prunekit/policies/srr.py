"""Structural Redundancy Reduction (SRR, arXiv 2104.03438): prune the most redundant layer first.

Redundancy of a group: its filters (each channel's producer filters, flattened and concatenated over the
group's producers, scaled to unit L2 norm) are the vertices of a graph whose edges join filters closer than
gamma. With k its number of connected components and c an estimate of its 1-covering number (greedy
dominating set), R = N / (w_c * c + w_k * k): N duplicates give R = N, N orthogonal filters give R = 1.

*(reconstructed)* choices, all parameters: the distance is divided by sqrt(vector length) when gamma is given
(`distance="scaled"`, the public reproduction's 0.023), or, by default, gamma is the `quantile` of all
groups' pairwise unit-vector distances pooled (`distance="unit"`, scale-free); the vertex removed from the
most redundant group is its smallest-L1 filter; ties in R go to the wider group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..criteria.base import member_rows, producer_weights
from ..graph.groups import ChannelGroup, DependencyGraph
from ..config import Config, check_choice, check_float
from .base import Allocation, allocate_sequence, register_policy, room

W_COVER, W_COMPONENTS = 0.65, 0.35


def filter_vectors(model, graph: DependencyGraph, g: ChannelGroup) -> torch.Tensor:
    """[size, length]: channel c's producer filters flattened and concatenated (positions, then producers)."""
    parts = []
    for m, w in producer_weights(model, graph, g):
        rows = member_rows(w, m).cpu()
        parts.append(torch.stack([rows[idx].reshape(-1) for idx in m.index]))
    if not parts:
        return torch.zeros(g.size, 0)
    return torch.cat(parts, dim=1)


def distances(vectors: torch.Tensor, distance: str = "unit") -> torch.Tensor:
    """Pairwise Euclidean distances of the unit-normed rows ("scaled": divided by sqrt(row length))."""
    if vectors.shape[1] == 0:
        return torch.full((vectors.shape[0],) * 2, float("inf"))
    u = vectors.double() / vectors.double().norm(dim=1, keepdim=True).clamp(min=1e-12)
    d = torch.cdist(u, u)
    if distance == "scaled":
        d = d / vectors.shape[1] ** 0.5
    elif distance != "unit":
        raise ValueError(f"distance must be 'unit' or 'scaled', got {distance!r}")
    d.fill_diagonal_(0.0)
    return d


def components(adj: torch.Tensor) -> int:
    """Number of connected components of an undirected graph given as a boolean adjacency matrix."""
    n = adj.shape[0]
    seen = torch.zeros(n, dtype=torch.bool)
    count = 0
    for s in range(n):
        if seen[s]:
            continue
        count += 1
        front = torch.zeros(n, dtype=torch.bool)
        front[s] = True
        while front.any():
            seen |= front
            front = adj[front].any(0) & ~seen
    return count


def covering_number(adj: torch.Tensor) -> int:
    """Greedy estimate of the 1-covering (dominating set) number: pick the vertex whose closed neighbourhood
    covers most uncovered vertices until all are covered (a ln(N)-approximation of an NP-hard number)."""
    n = adj.shape[0]
    closed = adj | torch.eye(n, dtype=torch.bool)
    uncovered = torch.ones(n, dtype=torch.bool)
    c = 0
    while uncovered.any():
        gain = (closed & uncovered).sum(1)
        v = int(torch.argmax(gain))
        uncovered &= ~closed[v]
        c += 1
    return c


def redundancy(adj: torch.Tensor, w_cover: float = W_COVER, w_components: float = W_COMPONENTS) -> float:
    """R = N / (w_cover * c + w_components * k) of the graph (0 for an empty graph)."""
    n = adj.shape[0]
    if n == 0:
        return 0.0
    return n / (w_cover * covering_number(adj) + w_components * components(adj))


@dataclass
class _GroupGraph:
    name: str
    dist: torch.Tensor
    alive: torch.Tensor
    order: list[int]  # removable vertices, smallest L1 first
    size: int


def resolve_gamma(dists: list[torch.Tensor], gamma: float | None, quantile: float) -> float:
    """gamma as given, or the `quantile` of every pairwise distance of every group pooled together."""
    if gamma is not None:
        return float(gamma)
    pooled = [d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)] for d in dists if d.shape[0] > 1]
    pooled = [p[torch.isfinite(p)] for p in pooled]
    if not pooled or sum(p.numel() for p in pooled) == 0:
        return 0.0
    allv = torch.cat(pooled).float()
    if allv.numel() > 2_000_000:
        allv = allv[torch.randperm(allv.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
    return float(torch.quantile(allv, quantile))


def _graphs(model, graph: DependencyGraph, distance: str) -> list[_GroupGraph]:
    out = []
    for g in graph.prunable_groups():
        vec = filter_vectors(model, graph, g)
        l1 = vec.abs().sum(1)
        cand = sorted(g.candidates, key=lambda c: (float(l1[c]), c))
        out.append(_GroupGraph(g.name, distances(vec, distance), torch.ones(g.size, dtype=torch.bool), cand, g.size))
    return out


def srr_redundancy(model, graph: DependencyGraph, gamma: float | None = None, quantile: float = 0.05,
                   distance: str | None = None) -> dict[str, float]:
    """Redundancy R of every prunable group of the model as it is (for `prunekit analyze`)."""
    distance = distance or ("scaled" if gamma is not None else "unit")
    gg = _graphs(model, graph, distance)
    gam = resolve_gamma([x.dist for x in gg], gamma, quantile)
    return {x.name: redundancy(x.dist <= gam) for x in gg}


def srr_sequence(model, graph: DependencyGraph, min_channels: int = 1, max_ratio: float = 0.9,
                 gamma: float | None = None, quantile: float = 0.05, distance: str | None = None,
                 w_cover: float = W_COVER, w_components: float = W_COMPONENTS) -> Iterator[str]:
    """The SRR loop: yield the most redundant group's name, remove its smallest-L1 vertex, recompute its R."""
    distance = distance or ("scaled" if gamma is not None else "unit")
    gg = {x.name: x for x in _graphs(model, graph, distance)}
    gam = resolve_gamma([x.dist for x in gg.values()], gamma, quantile)
    left = room(graph, min_channels, max_ratio)
    pos = {n: 0 for n in gg}
    rank = {n: i for i, n in enumerate(gg)}

    def r_of(x: _GroupGraph) -> float:
        a = x.alive
        return redundancy((x.dist[a][:, a] <= gam), w_cover, w_components)

    red = {n: r_of(x) for n, x in gg.items()}
    while True:
        open_ = [n for n in gg if left[n] > 0 and pos[n] < len(gg[n].order)]
        if not open_:
            return
        name = max(open_, key=lambda n: (round(red[n], 9), int(gg[n].alive.sum()), -rank[n]))
        x = gg[name]
        x.alive[x.order[pos[name]]] = False
        pos[name] += 1
        left[name] -= 1
        red[name] = r_of(x)
        yield name


@dataclass
class SRRConfig(Config):
    """Policy `srr`: gamma (the edge threshold; None: the `quantile` of all pooled pairwise distances),
    distance ("unit", or "scaled" by sqrt(filter length); None: "scaled" when gamma is given), and the weights
    of the covering number and the component count in R."""

    gamma: float | None = None
    quantile: float = 0.05
    distance: str | None = None
    w_cover: float = W_COVER
    w_components: float = W_COMPONENTS

    def __post_init__(self) -> None:
        check_float("SRRConfig", "gamma", self.gamma, 0.0, None, optional=True)
        check_float("SRRConfig", "quantile", self.quantile, 0.0, 1.0)
        if self.distance is not None:
            check_choice("SRRConfig", "distance", self.distance, ("unit", "scaled"))
        check_float("SRRConfig", "w_cover", self.w_cover, 0.0, None)
        check_float("SRRConfig", "w_components", self.w_components, 0.0, None)
        if self.w_cover + self.w_components <= 0:
            raise ValueError("SRRConfig: w_cover + w_components must be > 0")


@register_policy("srr", SRRConfig)
def srr(model, graph, scores, alloc: Allocation, config: SRRConfig) -> dict[str, int]:
    """Take channels from the most redundant group (recomputing its R after each) until `target` is met, or
    `ratio` of all channels are taken. Which channels go is the criterion's choice (l1 in the paper)."""
    c, a = config, alloc
    seq = srr_sequence(model, graph, a.min_channels, a.max_ratio, c.gamma, c.quantile, c.distance, c.w_cover,
                       c.w_components)
    return allocate_sequence(graph, seq, a.ratio, a.target, a.min_channels, a.max_ratio)
