"""The search of policy `auto`: candidates, the projection of a prunability vector onto the target boundary,
the (mu + lambda) evolution, and the measured-latency correction."""
from __future__ import annotations

import logging
import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Callable

from .base import clamp_counts, max_removable
from .latency_model import LatencyModel

log = logging.getLogger("prunekit.auto")


@dataclass
class Candidate:
    pref: list[float]
    counts: dict[str, int]
    score: float = -math.inf
    cost: dict[str, float] = field(default_factory=dict)
    final: float = -math.inf  # stage-2 score (after a short fine-tune), when there is one


class Projector:
    """Turns a prunability vector into counts on the target boundary (bisection on one scale)."""

    def __init__(self, graph, cost, min_channels, max_ratio, widths: dict[str, list[int]] | None = None):
        self.groups = graph.prunable_groups()
        self.graph, self.cost, self.widths = graph, cost, widths or {}
        self.cap = [max_removable(g, min_channels, max_ratio) for g in self.groups]
        self.min_channels, self.max_ratio = min_channels, max_ratio
        self.scale = 1.0  # tightens the latency goal after a measured overshoot

    def counts(self, pref: list[float], alpha: float) -> dict[str, int]:
        out = {}
        for g, cap, p in zip(self.groups, self.cap, pref):
            n = int(round(min(1.0, alpha * p) * cap))
            ok = self.widths.get(g.name)
            if ok and n:
                kept = min((w for w in ok if w >= g.size - n), default=g.size)
                n = g.size - kept
            out[g.name] = n
        return clamp_counts(self.graph, out, self.min_channels, self.max_ratio)

    def worst(self, counts: dict[str, int]) -> float:
        return max(v / (self.scale if k == "latency" else 1.0) for k, v in self.cost(counts).items())

    def __call__(self, pref: list[float], iters: int = 22) -> tuple[dict[str, int], bool]:
        hi = 1.0 / max(1e-3, min(pref))
        top = self.counts(pref, hi)
        if self.worst(top) > 1.0 + 1e-9:
            return top, False  # the target is out of reach within min_channels / max_ratio
        lo, best = 0.0, top
        for _ in range(iters):
            mid = (lo + hi) / 2
            c = self.counts(pref, mid)
            if self.worst(c) <= 1.0 + 1e-9:
                hi, best = mid, c
            else:
                lo = mid
        return best, True


def mutate(rng: random.Random, a: list[float], b: list[float], sigma: float) -> list[float]:
    child = [x if rng.random() < 0.5 else y for x, y in zip(a, b)]
    rate = max(1.0 / len(child), 0.3)
    child = [min(1.0, max(0.02, x * math.exp(rng.gauss(0, sigma)))) if rng.random() < rate else x for x in child]
    top = max(child)
    return [x / top for x in child]


def evolve(project: Projector, score: Callable[[dict], float], evaluations: int, population: int,
           sigma: float, seeds: list[list[float]], rng: random.Random, say: Callable[[str], None]) -> list[Candidate]:
    """(mu + lambda) evolution; returns every evaluated candidate, best first."""
    n = len(project.groups)
    seen: dict[tuple, Candidate] = {}
    reachable = True

    def consider(pref: list[float]) -> None:
        nonlocal reachable
        counts, ok = project(pref)
        reachable &= ok
        key = tuple(sorted(counts.items()))
        if key not in seen:
            seen[key] = Candidate(pref, counts, score(counts), project.cost(counts))

    pool = list(seeds) + [[rng.uniform(0.05, 1.0) for _ in range(n)] for _ in range(max(0, population - len(seeds)))]
    for pref in pool[:evaluations]:
        consider([p / max(pref) for p in pref])
    tries = 0
    while len(seen) < evaluations and tries < 20 * evaluations:
        tries += 1
        ranked = sorted(seen.values(), key=lambda c: -c.score)[:population]
        a, b = (max(rng.sample(ranked, min(3, len(ranked))), key=lambda c: c.score) for _ in range(2))
        before = len(seen)
        consider(mutate(rng, a.pref, b.pref, sigma))
        if len(seen) > before and len(seen) % max(population, evaluations // 4) == 0:
            say(f"auto: {len(seen)}/{evaluations} candidates, best score {ranked[0].score:.4f}")
    if not reachable:
        warnings.warn("auto: the target cannot be met within min_channels / max_ratio; returning the most "
                      "pruned allocation found", stacklevel=3)
    return sorted(seen.values(), key=lambda c: -c.score)


def meet_latency(lm: LatencyModel, counts_at: Callable[[float], dict[str, int]], keep: float,
                 tolerance: float = 0.03, rounds: int = 3, say: Callable[[str], None] = log.info
                 ) -> tuple[dict[str, int], float]:
    """Measure the real model of `counts_at(1.0)` (counts whose predicted latency is `keep` x dense) and correct
    the predicted goal by measured / wanted: tighter while over keep * (1 + tolerance), looser while under
    keep * (1 - 2 tolerance), at most `rounds` times. Returns the last candidate within the target (else the
    last one) and its measured latency / dense latency, dense and candidate timed together."""
    scale, counts, feasible = 1.0, counts_at(1.0), None
    for i in range(rounds + 1):
        dense_ms, ms = lm.measure_many([{}, counts])
        measured = ms / dense_ms
        if measured <= keep * (1 + tolerance):
            feasible = (counts, measured)
            if measured >= keep * (1 - 2 * tolerance):
                break
        if i == rounds:
            break
        scale *= keep / measured
        say(f"auto: measured {measured:.3f} of the dense latency for a goal of {keep}; predicted goal x {scale:.3f}")
        nxt = counts_at(scale)
        if nxt == counts:
            break
        counts = nxt
    return feasible or (counts, measured)


def knob_counts(lm: LatencyModel, make_counts: Callable[[float], dict[str, int]], keep: float, hi: float = 0.95,
                iters: int = 20) -> dict[str, int]:
    """Counts of the smallest knob in [0, hi] (more knob, more pruning) whose predicted latency is <= keep x dense:
    how a one-knob policy (uniform ratio, global threshold, SRR steps) is put at a latency."""
    lo, best = 0.0, make_counts(hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        c = make_counts(mid)
        if lm.ratio(c) <= keep:
            hi, best = mid, c
        else:
            lo = mid
    return best
