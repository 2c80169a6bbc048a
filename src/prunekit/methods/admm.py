"""Single-shot channel pruning with ADMM (arXiv 1902.06382), *(reconstructed, standard ADMM form)*.

    minimise f(W) + sum_i g_i(Z_i)  s.t. W_i = Z_i,   g_i = indicator(Z_i has at most k_i non-zero filters)
    repeat `iterations` (K) times:
        W-step: `epochs_per_iteration` (E) epochs of SGD on f(W) + sum_i rho/2 ||W_i - Z_i + U_i||^2
        Z-step: Z_i = (W_i + U_i) with all but its k_i largest-L2 filters zeroed
        U-step: U_i = U_i + W_i - Z_i;  rho = rho * rho_growth
    prune: keep the top-k_i filters by L1 norm; fine-tune once.

A "filter" of group i is a channel's slices in every producer of the group (coupled convs of a residual
stage share one channel set); k_i comes from `policy` for the target, allocated on the dense model's L1 scores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from ..config import check_float, check_int
from ..criteria.base import member_rows, per_channel
from ..graph.groups import ChannelGroup, Member
from ..planning import plan_from_scores, rescore, score_channels
from ..surgery import apply
from .common import begin, finish, policy_name, recover, shrink_graph, train
from .config import MethodConfig
from .registry import register_method
from .result import MethodResult


@dataclass
class AdmmConfig(MethodConfig):
    """admm: K = `iterations` ADMM iterations of E = `epochs_per_iteration` epochs each at `admm_lr` (default
    the recovery lr), penalty `rho` multiplied by `rho_growth` after each; filters are ranked by L1 (the
    plan's criterion is l1)."""

    METHOD: ClassVar[str] = "admm"
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {"criterion": "l1"}
    rho: float = 0.1
    rho_growth: float = 2.0
    iterations: int = 4
    epochs_per_iteration: int = 1
    admm_lr: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        w = "AdmmConfig"
        if self.plan.criterion != "l1":
            raise ValueError(f"{w}: ADMM keeps the largest-L1 filters; criterion must be 'l1', "
                             f"got {self.plan.criterion!r}")
        check_float(w, "rho", self.rho, 0.0, None, lo_open=True)
        check_float(w, "rho_growth", self.rho_growth, 1.0, None)
        check_int(w, "iterations", self.iterations, lo=1)
        check_int(w, "epochs_per_iteration", self.epochs_per_iteration, lo=1)
        check_float(w, "admm_lr", self.admm_lr, 0.0, None, lo_open=True, optional=True)


class _GroupADMM:
    """W (live parameters), Z and U of one channel group's producers, and its filter budget k."""

    def __init__(self, g: ChannelGroup, params: list[tuple[Member, nn.Parameter]], remove: int) -> None:
        self.g, self.params, self.remove = g, params, remove
        self.Z = [w.detach().clone() for _, w in params]
        self.U = [torch.zeros_like(w) for _, w in params]

    def sync(self) -> None:
        """Follow the parameters to their device (the Trainer moves the model after Z and U were made)."""
        dev = self.params[0][1].device
        if self.Z[0].device != dev:
            self.Z = [z.to(dev) for z in self.Z]
            self.U = [u.to(dev) for u in self.U]

    def norms(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """L2 norm of every channel's filter, over all producers."""
        sq = torch.zeros(self.g.size)
        for (m, _), t in zip(self.params, tensors):
            sq += per_channel(m, member_rows(t, m).pow(2).sum(1).cpu())
        return sq.sqrt()

    def dropped(self, tensors: list[torch.Tensor]) -> list[int]:
        n = self.norms(tensors)
        cand = torch.tensor(self.g.candidates, dtype=torch.long)
        order = cand[torch.argsort(n[cand], stable=True)]
        return order[: self.remove].tolist()

    @torch.no_grad()
    def z_step(self) -> None:
        self.sync()
        v = [w.detach() + u for (_, w), u in zip(self.params, self.U)]
        drop = self.dropped(v)
        self.Z = []
        for (m, _), t in zip(self.params, v):
            z = t.clone()
            pos = torch.tensor(m.positions(drop), dtype=torch.long, device=z.device)
            if len(pos):
                z.index_fill_(m.dim, pos, 0.0)
            self.Z.append(z)

    @torch.no_grad()
    def u_step(self) -> None:
        self.sync()
        for i, ((_, w), z) in enumerate(zip(self.params, self.Z)):
            self.U[i] = self.U[i] + w.detach() - z

    def penalty(self) -> torch.Tensor:
        self.sync()
        return sum(((w - z + u) ** 2).sum() for (_, w), z, u in zip(self.params, self.Z, self.U))

    @torch.no_grad()
    def residual(self) -> tuple[float, float]:
        self.sync()
        num = sum(float(((w.detach() - z) ** 2).sum()) for (_, w), z in zip(self.params, self.Z))
        den = sum(float((w.detach() ** 2).sum()) for _, w in self.params)
        return num, den


@register_method("admm", AdmmConfig)
def admm(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
         config: AdmmConfig | None = None, **options: Any) -> MethodResult:
    """ADMM training toward at most k_i filters per group, one prune by L1, one recovery. The k_i come from
    the plan's policy for its target on the dense model.

    Args:
        model: the model, pruned in place.
        train_loader: batches for the ADMM training and recovery.
        val_loader: validation batches for the Trainer (optional).
        example_inputs: inputs to trace with (default: the first sample of the first training batch).
        config: an AdmmConfig; or its fields as keywords (the PlanConfig ones, the Recovery ones, rho, rho_growth, iterations,
            epochs_per_iteration, admm_lr). An unknown keyword raises
            TypeError listing the valid ones.

    Returns:
        A MethodResult (`model, result = admm(...)` unpacks it).

    Example:
        >>> model, res = admm(net, loader, target=pk.Target(macs=0.5), iterations=2, finetune_epochs=1)
        >>> res.macs_kept <= 0.5
        True
    """
    cfg = AdmmConfig.resolve("admm()", config, options)
    run = begin(model, train_loader, example_inputs, cfg)
    graph, opts, history, timings = run.graph, cfg.recovery, run.history, run.timings
    history["admm_iterations"] = []
    t0 = time.perf_counter()
    alloc = plan_from_scores(model, graph, score_channels(model, graph, cfg.plan), cfg.plan, data=train_loader,
                             example_inputs=run.example_inputs)
    counts = {d.name: len(d.removed) for d in alloc.decisions}
    groups = _admm_groups(model, graph, counts)
    for a in groups:
        a.z_step()
    timings["allocate"] = time.perf_counter() - t0
    holder = {"rho": float(cfg.rho)}

    def admm_term(m, batch, outputs, loss):
        return 0.5 * holder["rho"] * sum(a.penalty() for a in groups)

    def on_epoch(trainer, epoch: int, record: dict) -> None:
        if epoch % cfg.epochs_per_iteration:
            return
        for a in groups:
            a.z_step()
            a.u_step()
        num, den = map(sum, zip(*(a.residual() for a in groups))) if groups else (0.0, 1.0)
        history["admm_iterations"].append({"epoch": epoch, "rho": holder["rho"],
                                           "residual": (num / max(den, 1e-30)) ** 0.5})
        holder["rho"] *= cfg.rho_growth

    t0 = time.perf_counter()
    tcfg = opts.config(cfg.iterations * cfg.epochs_per_iteration, cfg.admm_lr if cfg.admm_lr is not None else opts.lr)
    history["admm"], _ = train(model, train_loader, val_loader, tcfg, opts, loss_terms=[admm_term],
                               epoch_callbacks=[on_epoch])
    timings["admm"] = time.perf_counter() - t0
    removed_n, kept_n = _norms(groups)
    t0 = time.perf_counter()
    # the same counts, now with the channels ADMM drove toward zero scoring lowest
    meta = {**alloc.meta, "method": "admm", "method_config": cfg.to_dict()}
    plan = rescore(graph, alloc, score_channels(model, graph, cfg.plan), meta)
    apply(model, plan)
    graph = shrink_graph(graph, plan, model)
    timings["prune"] = time.perf_counter() - t0
    run.record(recover(model, run.teacher, train_loader, val_loader, opts))
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    extras = {"criterion": "l1", "policy": policy_name(cfg.plan.policy), "removed_norm": mean(removed_n),
              "kept_norm": mean(kept_n)}
    return finish(model, run, graph, plan, extras)


def _admm_groups(model: nn.Module, graph, counts: dict[str, int]) -> list[_GroupADMM]:
    params = dict(model.named_parameters())
    groups = []
    for g in graph.prunable_groups():
        if counts.get(g.name):
            prods = [(m, params[m.key]) for m in g.producers() if m.key in params]
            if prods:
                groups.append(_GroupADMM(g, prods, counts[g.name]))
    return groups


def _norms(groups: list[_GroupADMM]) -> tuple[list[float], list[float]]:
    """L2 norms of the filters ADMM drove toward zero, and of the ones it keeps (before pruning)."""
    removed_n, kept_n = [], []
    for a in groups:
        n = a.norms([p.detach() for _, p in a.params])
        drop = set(a.dropped(list(a.Z)))
        removed_n += [float(n[c]) for c in drop]
        kept_n += [float(n[c]) for c in range(a.g.size) if c not in drop]
    return removed_n, kept_n
