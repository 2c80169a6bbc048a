"""Per-channel activation and gradient statistics collected with hooks (taylor, apoz, mean_activation, hrank).

A group's channels are observed at its *sites*: the normalisation modules of the group (BatchNorm after a
conv, ...) or, where the group has none, its producer modules (conv / linear outputs). ReLU is applied to the
captured output for the post-activation statistics (apoz, mean_activation, hrank). For `taylor`, the product
activation x gradient at the pre-ReLU output equals the one at the post-ReLU output (the ReLU's gradient is
zero exactly where its output is), so no ReLU is needed there.

The same `ActivationRecorder` serves a criterion (its own forward/backward over a few batches) and the coarse
ranking method (hooks stay attached while the Trainer runs its ordinary steps; nothing else runs the model).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..graph.groups import ChannelGroup, DependencyGraph
from ..train.evaluation import move, split_batch
from ..utils.inputs import call_model

STATS = ("taylor", "apoz", "mean_activation", "hrank")
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)


@dataclass
class Site:
    """Where a group's channels can be observed: `module`'s output along `dim`, positions index[c]."""

    name: str
    module: nn.Module
    dim: int
    index: list[list[int]]


def _out_dim(module: nn.Module) -> int:
    return 1 if isinstance(module, _CHANNEL_FIRST) else -1


def group_sites(model: nn.Module, g: ChannelGroup) -> list[Site]:
    """The modules whose outputs carry the group's channels: its norm layers, else its producers."""
    mods = dict(model.named_modules())
    sites: dict[str, Site] = {}
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    for m in g.members:
        mod = mods.get(m.module)
        if m.role == "norm" and isinstance(mod, norm_types) and m.dim == 0 and m.module not in sites \
                and m.key in (f"{m.module}.weight", f"{m.module}.running_mean"):
            if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) != 1:
                continue
            sites[m.module] = Site(m.module, mod, _out_dim(mod), m.index)
    if sites:
        return list(sites.values())
    for m in g.producers():
        mod = mods.get(m.module)
        if mod is None or m.key != f"{m.module}.weight" or m.module in sites:
            continue
        if isinstance(mod, nn.modules.conv._ConvNd):
            if mod.transposed and (m.dim != 1 or mod.groups != 1):
                continue
            if not mod.transposed and m.dim != 0:
                continue
        elif isinstance(mod, nn.Linear) and m.dim != 0:
            continue
        elif isinstance(mod, nn.Embedding) and m.dim != 1:
            continue
        elif not isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)):
            continue
        sites[m.module] = Site(m.module, mod, _out_dim(mod), m.index)
    return list(sites.values())


def gather_channels(index: list[list[int]], per_position: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """Per group channel, the sum (or mean) of a per-position vector over the channel's positions."""
    lengths = torch.tensor([len(p) for p in index], dtype=torch.long)
    flat = torch.tensor([i for p in index for i in p], dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(index)), lengths)
    out = torch.zeros(len(index), dtype=per_position.dtype).index_add_(0, owner, per_position.cpu()[flat])
    return out / lengths.clamp(min=1) if reduce == "mean" else out


def _rows(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x as [channels, everything else]."""
    return x.movedim(dim, 0).reshape(x.shape[dim], -1)


class _SiteStats:
    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}

    def add(self, key: str, value: torch.Tensor, count: float) -> None:
        v = value.detach().double()
        self.sums[key] = self.sums[key] + v if key in self.sums else v
        self.counts[key] = self.counts.get(key, 0.0) + count

    def mean(self, key: str) -> torch.Tensor | None:
        if key not in self.sums:
            return None
        return (self.sums[key] / max(1e-12, self.counts[key])).float().cpu()


class ActivationRecorder:
    """Hooks that accumulate per-channel statistics of the groups' site outputs during forward/backward.

    stats: any of "taylor" (needs a backward pass), "apoz", "mean_activation", "hrank". relu: apply ReLU to
    the captured output before apoz / mean_activation / hrank. `time_s` accumulates the time spent inside the
    hooks (the ranking overhead), `forward_calls` the number of site outputs seen.
    """

    def __init__(self, model: nn.Module, graph: DependencyGraph, stats: Iterable[str] = ("taylor",),
                 relu: bool = True, groups: Iterable[ChannelGroup] | None = None) -> None:
        self.stats = tuple(stats)
        bad = [s for s in self.stats if s not in STATS]
        if bad:
            raise ValueError(f"unknown activation statistic(s) {bad}; choose from {STATS}")
        self.model, self.relu = model, relu
        self.groups = list(groups) if groups is not None else graph.prunable_groups()
        self.sites = {g.name: group_sites(model, g) for g in self.groups}
        self._handles: list[Any] = []
        self.time_s = 0.0
        self.forward_calls = 0
        self.reset()

    # -- lifecycle
    def reset(self) -> None:
        self._stats: dict[str, _SiteStats] = {}

    def attach(self) -> "ActivationRecorder":
        if self._handles:
            return self
        seen: set[str] = set()
        for sites in self.sites.values():
            for s in sites:
                if s.name not in seen:
                    seen.add(s.name)
                    self._handles.append(s.module.register_forward_hook(self._hook(s)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "ActivationRecorder":
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def rebind(self, graph: DependencyGraph) -> None:
        """Follow a pruned model: new groups (same names, fewer channels); statistics start afresh."""
        attached = bool(self._handles)
        self.detach()
        names = {g.name for g in self.groups}
        self.groups = [g for g in graph.prunable_groups() if g.name in names] or graph.prunable_groups()
        self.sites = {g.name: group_sites(self.model, g) for g in self.groups}
        self.reset()
        if attached:
            self.attach()

    # -- hooks
    def _hook(self, site: Site):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor) or out.dim() == 0:
                return
            t0 = time.perf_counter()
            self.forward_calls += 1
            st = self._stats.setdefault(site.name, _SiteStats())
            dim = site.dim % out.dim()
            a = out.detach()
            if any(s != "taylor" for s in self.stats):
                with torch.no_grad():
                    post = F.relu(a) if self.relu else a
                    rows = _rows(post, dim)
                    if "apoz" in self.stats:
                        st.add("apoz", (rows == 0).sum(1).double(), rows.shape[1])
                    if "mean_activation" in self.stats:
                        st.add("mean_activation", rows.sum(1).double(), rows.shape[1])
                    if "hrank" in self.stats:
                        st.add("hrank", *_ranks(post, dim))
            if "taylor" in self.stats and out.requires_grad:
                def grad_hook(grad: torch.Tensor) -> None:
                    t1 = time.perf_counter()
                    with torch.no_grad():
                        prod = _rows(a * grad.detach(), dim).mean(1).abs()
                        st.add("taylor", prod, 1.0)
                    self.time_s += time.perf_counter() - t1

                out.register_hook(grad_hook)
            self.time_s += time.perf_counter() - t0

        return hook

    # -- results
    def site_outputs_needed(self) -> bool:
        return "taylor" in self.stats

    def scores(self, stat: str, normalize: bool | None = None) -> dict[str, torch.Tensor]:
        """Per group, one score per channel (higher = keep), summed over the group's sites.

        taylor is L2-normalised per site (layer) before summing (Molchanov et al.); apoz is returned as the
        fraction of non-zero activations (1 - APoZ) so that higher keeps. Groups never observed score 0.
        """
        normalize = (stat == "taylor") if normalize is None else normalize
        out = {}
        for g in self.groups:
            total = torch.zeros(g.size)
            for s in self.sites[g.name]:
                st = self._stats.get(s.name)
                v = st.mean(stat) if st is not None else None
                if v is None:
                    continue
                if stat == "apoz":
                    v = 1.0 - v
                if normalize:
                    v = v / v.norm().clamp(min=1e-12)
                total += gather_channels(s.index, v, "mean")
            out[g.name] = total
        return out

    def observed(self) -> set[str]:
        return set(self._stats)


def _ranks(post: torch.Tensor, dim: int) -> tuple[torch.Tensor, float]:
    """Sum over the batch of the rank of each channel's feature map, and the number of maps per channel."""
    x = post.movedim(dim, 1)
    c = x.shape[1]
    if x.dim() >= 4:
        maps = x.reshape(x.shape[0] * c, x.shape[2], -1).float()
        r = torch.linalg.matrix_rank(maps).reshape(x.shape[0], c).sum(0)
        return r.double(), float(x.shape[0])
    # vectors (linear layers): a map of one number has rank 1 when non-zero
    flat = x.reshape(x.shape[0], c, -1)
    r = (flat != 0).any(-1).sum(0)
    return r.double(), float(x.shape[0])


def iter_batches(data: Any, batches: int | None = None) -> Iterable[Any]:
    """At most `batches` batches from a DataLoader, a list of batches, or a single (inputs, targets) pair."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor) \
            and isinstance(data[1], torch.Tensor) and data[1].dim() == 1 and data[0].shape[0] == data[1].shape[0]:
        data = [data]
    return itertools.islice(data, batches) if batches is not None else data


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def record(model: nn.Module, graph: DependencyGraph, data: Any, stats: Iterable[str], batches: int | None = 8,
           relu: bool = True, loss_fn=None) -> ActivationRecorder:
    """Run the model over `batches` batches of `data` (eval mode; backward only when taylor is asked)."""
    rec = ActivationRecorder(model, graph, stats, relu)
    loss_fn = loss_fn or F.cross_entropy
    device = model_device(model)
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    keep = rec.site_outputs_needed()

    def grab(module, inputs, output):
        if keep and isinstance(output, torch.Tensor) and output.requires_grad:
            outs.append(output)

    grabs = []
    try:
        with rec:
            if keep:
                grabs = [s.module.register_forward_hook(grab) for ss in rec.sites.values() for s in ss]
            for batch in iter_batches(data, batches):
                inputs, targets = move(split_batch(batch), device)
                outs.clear()
                with torch.set_grad_enabled(keep):
                    logits = call_model(model, inputs)
                    if keep and outs:
                        torch.autograd.grad(loss_fn(logits, targets), outs, allow_unused=True)
    finally:
        for h in grabs:
            h.remove()
        model.train(was_training)
    return rec
