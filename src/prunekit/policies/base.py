"""Policy registry, targets and the shared bisection that turns a knob into a target."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch

from ..config import NoOptions, check_float, check_int, unknown_keywords
from ..graph.cost import predict
from ..graph.groups import ChannelGroup, DependencyGraph
from ..registry import Registry

POLICIES: Registry = Registry("policy")


@dataclass(frozen=True)
class Target:
    """What must be reached, as fractions of the dense model to keep (0.5 = half)."""

    macs: float | None = None
    params: float | None = None
    latency: float | None = None
    size: float | None = None  # safetensors bytes of the state dict (a pk.save file adds its description and plan)

    def __post_init__(self) -> None:
        named = {k: v for k, v in asdict(self).items() if v is not None}
        if not named:
            raise ValueError("Target needs one of macs=, params=, latency=, size= (fractions to keep)")
        for k, v in named.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"Target {k}={v!r}: give a number, the fraction to keep")
            if not 0 < v <= 1:
                raise ValueError(f"Target {k}={v}: give the fraction to keep, in (0, 1]")

    def items(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Allocation:
    """What every policy allocates for: `ratio` of the channels or a `target`, within the guards (keep at least
    `min_channels` and at most lose `max_ratio` of each group). `seed` seeds any randomness; `data` and
    `example_inputs` are for policies that measure; a policy may record what it found in `info`."""

    ratio: float | None = None
    target: Target | None = None
    min_channels: int = 1
    max_ratio: float = 0.9
    seed: int = 0
    data: Any = None
    example_inputs: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.target, dict):
            self.target = Target(**self.target)
        if self.target is not None and not isinstance(self.target, Target):
            raise TypeError(f"target must be a pk.Target or a dict, got {type(self.target).__name__}")
        check_float("allocation", "ratio", self.ratio, 0.0, 1.0, hi_open=True, optional=True)
        if self.ratio and self.target is not None:
            raise ValueError(f"give ratio or target, not both (ratio={self.ratio}, target={self.target.items()})")
        check_int("allocation", "min_channels", self.min_channels, lo=1)
        check_float("allocation", "max_ratio", self.max_ratio, 0.0, 1.0, lo_open=True, hi_open=True)
        check_int("allocation", "seed", self.seed)


ALLOCATION_KEYS = ("ratio", "target", "min_channels", "max_ratio", "seed", "data", "example_inputs")


@dataclass(frozen=True)
class Policy:
    """A registered policy: `fn(model, graph, scores, allocation, config) -> {group: channels to remove}`.

    Calling it with keywords builds the Allocation from the allocation keywords and the policy's config from
    the rest, so an unknown keyword raises TypeError naming it and listing the valid ones.
    """

    name: str
    fn: Callable[..., dict[str, int]]
    config_type: type

    def __call__(self, model, graph: DependencyGraph, scores: dict[str, torch.Tensor], *, config: Any = None,
                 **kwargs: Any) -> dict[str, int]:
        alloc_kw = {k: kwargs.pop(k) for k in ALLOCATION_KEYS if k in kwargs}
        if config is not None and kwargs:
            raise TypeError(f"policy {self.name!r}: give config= or keyword options, not both ({sorted(kwargs)})")
        unknown_keywords(f"policy {self.name!r}", kwargs, [*self.config_type.field_names(), *ALLOCATION_KEYS])
        return self.run(model, graph, scores, Allocation(**alloc_kw), self.make_config(config, kwargs))

    def make_config(self, config: Any = None, options: dict[str, Any] | None = None) -> Any:
        """`config` checked against the policy's type, or one built from `options` (unknown keys raise)."""
        if config is None:
            return self.config_type.from_kwargs(f"policy {self.name!r}", options or {})
        if options:
            raise TypeError(f"policy {self.name!r}: give config= or keyword options, not both ({sorted(options)})")
        if isinstance(config, dict):
            return self.config_type.from_dict(config)
        if not isinstance(config, self.config_type):
            raise TypeError(f"policy {self.name!r} is configured by {self.config_type.__name__}, "
                            f"got {type(config).__name__}")
        return config

    def run(self, model, graph: DependencyGraph, scores: dict[str, torch.Tensor], alloc: Allocation,
            config: Any) -> dict[str, int]:
        return self.fn(model, graph, scores, alloc, config)


def register_policy(name: str, config: type = NoOptions):
    """Register `fn(model, graph, scores, allocation, config)` as policy `name`, configured by `config`."""

    def deco(fn):
        POLICIES.register(name, Policy(name, fn, config), config=config)
        return fn

    return deco


def list_policies() -> list[str]:
    """Names of the registered policies, sorted."""
    return POLICIES.names()


def get_policy(name: str | Policy | Callable) -> Policy:
    """The registered policy `name`; a Policy passes through; a plain function
    `fn(model, graph, scores, allocation, config)` becomes a policy without options.

    Args:
        name: "uniform", "global", "width", "srr", "auto" (`list_policies()`), a Policy or a function.

    Returns:
        A Policy: `policy(model, graph, scores, ratio=..., target=..., **options) -> {group name: channels
        to remove}`, or `policy.run(model, graph, scores, allocation, config)` with built configs.

    Example:
        >>> counts = get_policy("uniform")(model, graph, scores, ratio=0.5)
        >>> all(counts[g.name] == g.size // 2 for g in graph.prunable_groups())
        True
    """
    if isinstance(name, Policy):
        return name
    if callable(name):
        return Policy(getattr(name, "__name__", "custom"), name, NoOptions)
    return POLICIES.entry(name).obj


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
            raise ValueError(f"target {k!r} needs the 'auto' policy (measured latency / state-dict bytes)")
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
