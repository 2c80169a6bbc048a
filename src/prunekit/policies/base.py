"""Policy registry, targets and the shared bisection that turns a knob into a target."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch

from ..graph.cost import predict
from ..graph.groups import ChannelGroup, DependencyGraph

POLICIES: dict[str, Callable] = {}


@dataclass(frozen=True)
class Target:
    """What must be reached, as fractions of the dense model to keep (0.5 = half)."""

    macs: float | None = None
    params: float | None = None
    latency: float | None = None
    size: float | None = None

    def __post_init__(self) -> None:
        named = {k: v for k, v in asdict(self).items() if v is not None}
        if not named:
            raise ValueError("Target needs one of macs=, params=, latency=, size= (fractions to keep)")
        for k, v in named.items():
            if not 0 < v <= 1:
                raise ValueError(f"Target {k}={v}: give the fraction to keep, in (0, 1]")

    def items(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def register_policy(name: str):
    def deco(fn):
        POLICIES[name] = fn
        fn.policy_name = name
        return fn

    return deco


def list_policies() -> list[str]:
    return sorted(POLICIES)


def get_policy(name: str | Callable) -> Callable:
    if callable(name):
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(list_policies())}")
    return POLICIES[name]


def max_removable(g: ChannelGroup, min_channels: int = 1, max_ratio: float = 0.9) -> int:
    """Most channels g may lose: keeps min_channels, at most max_ratio of the group, only candidates."""
    keep_floor = max(min_channels, math.ceil(g.size * (1 - max_ratio)), 1)
    n = min(len(g.candidates), g.size - keep_floor)
    return max(0, _round_removal(g, n, down=True))


def _round_removal(g: ChannelGroup, n: int, down: bool = False) -> int:
    """Adjust a removal count so the kept width is a multiple of g.round_to."""
    r = max(1, g.round_to)
    if r == 1 or n <= 0:
        return n
    kept = g.size - n
    kept = (kept // r) * r if not down else math.ceil(kept / r) * r
    kept = max(r, kept)
    return max(0, g.size - kept)


def clamp_counts(graph: DependencyGraph, counts: dict[str, int], min_channels=1, max_ratio=0.9) -> dict[str, int]:
    out = {}
    for g in graph.prunable_groups():
        n = min(int(counts.get(g.name, 0)), max_removable(g, min_channels, max_ratio))
        n = _round_removal(g, n)
        n = min(n, max_removable(g, min_channels, max_ratio))
        if n > 0:
            out[g.name] = n
    return out


def target_fraction(graph: DependencyGraph, counts: dict[str, int], target: Target, base: dict | None = None) -> float:
    """Worst ratio (predicted / required) over the target's MAC and parameter terms; <= 1 means met."""
    base = base or predict(graph, {})
    now = predict(graph, counts)
    worst = 0.0
    for k, v in target.items().items():
        if k in ("macs", "params"):
            worst = max(worst, now[k] / max(1.0, base[k]) / v)
        else:
            raise ValueError(f"target {k!r} needs the 'auto' policy (measured latency / file size)")
    return worst


def bisect_knob(graph: DependencyGraph, make_counts: Callable[[float], dict[str, int]], target: Target,
                lo: float = 0.0, hi: float = 1.0, iters: int = 30) -> dict[str, int]:
    """Find the smallest knob in [lo, hi] whose counts meet the target (counts grow with the knob)."""
    base = predict(graph, {})
    best = make_counts(hi)
    if target_fraction(graph, best, target, base) > 1.0 + 1e-9:
        return best  # cannot meet the target within the limits; return the most pruned allocation
    for _ in range(iters):
        mid = (lo + hi) / 2
        c = make_counts(mid)
        if target_fraction(graph, c, target, base) <= 1.0 + 1e-9:
            hi, best = mid, c
        else:
            lo = mid
    return best


def select_kept(graph: DependencyGraph, scores: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, list[int]]:
    """Per group, keep all but the `counts[group]` lowest-scored removable channels."""
    kept = {}
    for g in graph.prunable_groups():
        n = counts.get(g.name, 0)
        if n <= 0:
            continue
        s = scores.get(g.name)
        cand = torch.tensor(g.candidates, dtype=torch.long)
        if s is None:
            raise ValueError(f"no scores for group {g.name!r}")
        order = cand[torch.argsort(s[cand].float(), stable=True)]
        drop = set(order[:n].tolist())
        kept[g.name] = [c for c in range(g.size) if c not in drop]
    return kept


def total_channels(graph: DependencyGraph) -> int:
    """Channels over all prunable groups (what a plain `ratio` of a sequence policy refers to)."""
    return sum(g.size for g in graph.prunable_groups())


def allocate_sequence(graph: DependencyGraph, sequence: Iterable[str], ratio: float | None = None,
                      target: Target | None = None, min_channels: int = 1, max_ratio: float = 0.9) -> dict[str, int]:
    """Counts from the shortest prefix of `sequence` (group names, one per channel taken) that meets `target`,
    or, for a ratio, from its first round(ratio * total channels) entries.

    Policies that take channels one at a time (global, width, srr) describe their greedy order as a sequence;
    the first prefix that meets the target is within one channel of it. The sequence is read lazily and the
    prefix found by galloping then bisection (costs only grow with the prefix). A sequence that ends before
    meeting the target gives everything it took (the most pruned allocation the guards allow).
    """
    it = iter(sequence)
    if target is None:
        n = int(round(float(ratio or 0.0) * total_channels(graph)))
        return clamp_counts(graph, _prefix_counts(list(itertools.islice(it, n)), n), min_channels, max_ratio)
    base = predict(graph, {})
    seq: list[str] = []

    def counts(n: int) -> dict[str, int]:
        return clamp_counts(graph, _prefix_counts(seq, n), min_channels, max_ratio)

    def meets(n: int) -> bool:
        return target_fraction(graph, counts(n), target, base) <= 1.0 + 1e-9

    if meets(0):
        return {}
    lo, hi = 0, 1  # meets(lo) is False; find hi with meets(hi)
    while True:
        seq.extend(itertools.islice(it, hi - len(seq)))
        if len(seq) < hi:  # the sequence ended
            hi = len(seq)
            if not meets(hi):
                return counts(hi)
            break
        if meets(hi):
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(mid) else (mid, hi)
    return counts(hi)


def _prefix_counts(seq: list[str], n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in seq[:n]:
        out[name] = out.get(name, 0) + 1
    return out


def room(graph: DependencyGraph, min_channels: int = 1, max_ratio: float = 0.9) -> dict[str, int]:
    """How many channels each prunable group may still lose under the guards."""
    return {g.name: max_removable(g, min_channels, max_ratio) for g in graph.prunable_groups()}


def normalize_scores(s: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Scale one group's scores so groups compare: by their mean, max, L2 norm or sum ("none" leaves them)."""
    s = s.float()
    if how == "none":
        return s
    den = {"mean": s.abs().mean(), "max": s.abs().max(), "l2": s.norm(), "sum": s.abs().sum()}.get(how)
    if den is None:
        raise ValueError(f"unknown normalisation {how!r}; choose mean, max, l2, sum or none")
    return s / den.clamp(min=1e-12)
