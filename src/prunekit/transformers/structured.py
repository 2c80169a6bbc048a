"""Structured width pruning of transformer blocks from calibration data, FLAP-like (An et al., AAAI 2024).

The engine (pk.trace with heads=True) finds the channel groups inside each block: attention heads (GQA
groups included, whatever the attention code) and MLP neurons. A group's channels feed one or more
consumer ``nn.Linear`` layers (attention output projection, MLP down projection); each channel is scored from
the consumer's calibration inputs and weight columns:

- ``fluctuation`` (FLAP): sum over the channel's input columns j of Var(X_j) * ||W_:,j||^2;
- ``activation``: the same with E[X_j^2] instead of the variance (Wanda-like, structured);
- ``magnitude``: ||W_:,j||^2 only (no data).

``allocation="adaptive"`` standardises the scores per group and removes the globally lowest channels until
the parameter budget is met, so layers lose different amounts (FLAP's adaptive structure);
``"uniform"`` removes the same fraction of every group. With ``bias_compensation`` each consumer's bias absorbs
the mean contribution of its removed inputs, b += W[:, J] @ E[X_J] (a bias is added where there was none).
The plan is applied with pk.apply, then an HF model's config is updated (prunekit.transformers.hf).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from prunekit.config import Config
from prunekit.graph.plan import PruningPlan
from prunekit.probing import trace
from prunekit.surgery import apply
from . import hf
from .calibration import LinearStats, find_blocks, run_blocks

IMPORTANCE = ("fluctuation", "activation", "magnitude")
ALLOCATION = ("adaptive", "uniform")


@dataclass
class StructuredConfig(Config):
    """Options of FLAP-like width pruning.

    Attributes:
        ratio: fraction of the prunable block parameters (heads + MLP neurons, their weights and biases)
            to remove.
        importance: channel score, one of IMPORTANCE.
        allocation: "adaptive" (standardised scores, one global ranking) or "uniform" (same ratio per group).
        bias_compensation: fold removed inputs' mean contribution into the consumer's bias.
        heads: prune whole attention heads (False: only MLP neurons).
        mlp: prune MLP neurons.
        min_keep: channels every group keeps.
    """

    ratio: float = 0.5
    importance: str = "fluctuation"
    allocation: str = "adaptive"
    bias_compensation: bool = True
    heads: bool = True
    mlp: bool = True
    min_keep: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCE:
            raise ValueError(f"importance={self.importance!r}; valid: {', '.join(IMPORTANCE)}")
        if self.allocation not in ALLOCATION:
            raise ValueError(f"allocation={self.allocation!r}; valid: {', '.join(ALLOCATION)}")
        if self.min_keep < 1:
            raise ValueError(f"min_keep must be >= 1, got {self.min_keep}")
        if not (self.heads or self.mlp):
            raise ValueError("heads and mlp are both False: nothing to prune")


@dataclass
class StructuredReport:
    """Outcome of one width-pruning run."""

    config: dict[str, Any]
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> size, kept
    params_before: int = 0
    params_after: int = 0
    prunable_params: int = 0
    removed_params: int = 0
    added_bias: list[str] = field(default_factory=list)
    config_updates: dict[str, Any] = field(default_factory=dict)
    exact: bool = True
    seconds: float = 0.0
    plan: Any = field(default=None, repr=False, compare=False)  # the PruningPlan applied

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "plan"}


@dataclass
class _Unit:
    """One prunable group of a block, its consumers and the per-channel parameter cost."""

    group: Any
    consumers: list[Any]  # Members with role "in" on an nn.Linear, dim 1
    cost: torch.Tensor     # parameters removed with each channel
    is_head: bool


def _select_units(model: nn.Module, graph, cfg: StructuredConfig) -> list[_Unit]:
    """Prunable groups lying inside one block, with an nn.Linear consumer (the residual stream and anything
    crossing blocks stay)."""
    found = find_blocks(model)
    if found is None:
        raise ValueError(f"{type(model).__name__}: no block list (nn.ModuleList of identical blocks) found")
    prefix = found[0] + "."
    modules = dict(model.named_modules())
    units = []
    for g in graph.groups:
        if not g.prunable:
            continue
        blocks = {m.module[len(prefix):].split(".")[0] if m.module.startswith(prefix) else None for m in g.members}
        if len(blocks) != 1 or None in blocks:
            continue
        consumers = [m for m in g.members if m.role == "in" and m.dim == 1 and m.key.endswith(".weight")
                     and isinstance(modules.get(m.module), nn.Linear)]
        if not consumers:
            continue
        is_head = any(len(ix) > 1 for ix in g.producers()[0].index) if g.producers() else False
        if (is_head and not cfg.heads) or (not is_head and not cfg.mlp):
            continue
        cost = torch.zeros(g.size, dtype=torch.float64)
        for m in g.members:
            shape = graph.shapes[m.key]
            per = float(torch.tensor(shape).prod()) / shape[m.dim]
            cost += torch.tensor([len(ix) * per for ix in m.index], dtype=torch.float64)
        units.append(_Unit(g, consumers, cost, is_head))
    if not units:
        raise ValueError(f"{type(model).__name__}: no prunable head or MLP group inside the blocks "
                         f"(groups: {', '.join(g.name for g in graph.groups)})")
    return units


def channel_scores(model: nn.Module, unit: _Unit, stats: dict[str, LinearStats], importance: str) -> torch.Tensor:
    """Score of each channel of a unit's group (higher = keep), summed over its consumers' input columns."""
    out = torch.zeros(unit.group.size, dtype=torch.float64)
    for m in unit.consumers:
        w = model.get_submodule(m.module).weight.detach().double()
        col = w.square().sum(0)
        if importance == "magnitude":
            per = col
        else:
            st = stats[m.module]
            per = col * (st.variance if importance == "fluctuation" else st.sq_sum / max(st.tokens, 1))
        out += torch.stack([per[torch.tensor(ix)].sum() for ix in m.index])
    return out


def allocate(units: list[_Unit], scores: list[torch.Tensor], cfg: StructuredConfig) -> list[list[int]]:
    """Kept channel indices per unit: the globally lowest standardised scores go first until ``ratio`` of
    the units' parameters are removed (adaptive), or the lowest ``ratio`` of each group (uniform)."""
    if cfg.allocation == "uniform":
        kept = []
        for u, s in zip(units, scores):
            n_remove = min(int(round(cfg.ratio * u.group.size)), u.group.size - cfg.min_keep)
            order = s.argsort(stable=True)
            kept.append(sorted(order[n_remove:].tolist()))
        return kept
    entries = []
    for ui, s in enumerate(scores):
        std = s.std() if len(s) > 1 else torch.tensor(0.0, dtype=s.dtype)
        z = (s - s.mean()) / std if std > 0 else torch.zeros_like(s)
        entries += [(float(z[c]), ui, c) for c in range(len(s))]
    entries.sort()
    budget = cfg.ratio * float(sum(u.cost.sum() for u in units))
    removed = [set() for _ in units]
    spent = 0.0
    for _, ui, c in entries:
        if spent >= budget:
            break
        if units[ui].group.size - len(removed[ui]) <= cfg.min_keep:
            continue
        removed[ui].add(c)
        spent += float(units[ui].cost[c])
    return [[c for c in range(u.group.size) if c not in r] for u, r in zip(units, removed)]


def compensate_bias(model: nn.Module, unit: _Unit, kept: list[int], stats: dict[str, LinearStats]) -> list[str]:
    """b += W[:, J] @ E[X_J] for each consumer and its removed input columns J; returns consumers given a
    new bias."""
    keep = set(kept)
    removed = [c for c in range(unit.group.size) if c not in keep]
    added = []
    for m in unit.consumers:
        cols = m.positions(removed)
        if not cols:
            continue
        lin = model.get_submodule(m.module)
        idx = torch.tensor(cols)
        shift = lin.weight.detach().double()[:, idx] @ stats[m.module].mean[idx].to(lin.weight.device)
        with torch.no_grad():
            if lin.bias is None:
                lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype,
                                                    device=lin.weight.device))
                added.append(m.module)
            lin.bias += shift.to(lin.bias.dtype)
    return added


def prune_structured(model: nn.Module, batches: Sequence[Any], config: StructuredConfig | None = None,
                     **options: Any) -> StructuredReport:
    """Remove attention heads and MLP neurons of ``model`` in place (physically smaller) from calibration data.

    Args:
        model: a model with a block list (HF encoder or decoder, or any nn.ModuleList of identical blocks).
        batches: calibration batches; the first one is also the trace's example input.
        config: a StructuredConfig, or its fields as keywords (unknown ones raise TypeError).

    Returns:
        StructuredReport (kept channels per group, parameters before / after, config updates).

    Example:
        >>> prune_structured(model, batches, ratio=0.5, importance="fluctuation")
    """
    config = StructuredConfig.resolve("prune_structured()", config, options)
    start = time.perf_counter()
    report = StructuredReport(asdict(config))
    report.params_before = sum(p.numel() for p in model.parameters())
    hf = _hf_module(model)
    if hf is not None:
        hf.register_patches(model)
    graph = trace(model, batches[0], heads=config.heads)
    units = _select_units(model, graph, config)
    consumers = {m.module for u in units for m in u.consumers}
    stats = {} if config.importance == "magnitude" and not config.bias_compensation else run_blocks(
        model, batches, filter_fn=lambda _m, n: n in consumers)
    scores = [channel_scores(model, u, stats, config.importance) for u in units]
    kept = allocate(units, scores, config)
    report.prunable_params = int(sum(float(u.cost.sum()) for u in units))
    report.removed_params = int(sum(float(u.cost.sum()) - float(u.cost[k].sum()) for u, k in zip(units, kept)))
    if config.bias_compensation:
        for u, k in zip(units, kept):
            report.added_bias += compensate_bias(model, u, k, stats)
    by_name = {u.group.name: k for u, k in zip(units, kept)}
    if report.added_bias:  # the trace must see the new bias tensors: trace again (group names stay)
        graph = trace(model, batches[0], heads=config.heads)
    plan = PruningPlan.from_kept(graph, by_name, meta={"method": "structured", "config": asdict(config)})
    apply(model, plan)
    if hf is not None and hf.is_hf_model(model):
        report.config_updates = hf.update_config(model)
    report.groups = {u.group.name: {"size": u.group.size, "kept": len(k)} for u, k in zip(units, kept)}
    report.exact = plan.exact
    report.plan = plan
    report.params_after = sum(p.numel() for p in model.parameters())
    report.seconds = time.perf_counter() - start
    return report


def _hf_module(model: nn.Module):
    """prunekit.transformers.hf when the model is a transformers model (it imports transformers)."""
    if not type(model).__module__.startswith("transformers."):
        return None
    return hf


__all__ = ["ALLOCATION", "IMPORTANCE", "StructuredConfig", "StructuredReport", "allocate", "channel_scores",
           "compensate_bias", "prune_structured"]
