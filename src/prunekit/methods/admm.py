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
from typing import Any, Iterable

import torch
from torch import nn

from ..criteria.base import member_rows, per_channel
from ..graph.groups import ChannelGroup, Member
from ..policies.base import Target
from ..surgery import apply
from .common import (as_target, cost, default_inputs, no_extra, plan_step, recover, score, shrink_graph,
                     split_options, summary, teacher_of, trace_model, train)


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


def admm(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, example_inputs: Any = None,
         *, target: Target | dict | None = None, ratio: float | None = None, policy: str = "uniform",
         rho: float = 0.1, rho_growth: float = 2.0, iterations: int = 4, epochs_per_iteration: int = 1,
         admm_lr: float | None = None, policy_kw: dict | None = None, min_channels: int = 1, max_ratio: float = 0.9,
         **kw: Any) -> tuple[nn.Module, dict[str, Any]]:
    """ADMM training toward at most k_i filters per group (rho, rho_growth per iteration, K = `iterations`,
    E = `epochs_per_iteration`, at `admm_lr`, default the fine-tuning lr), one prune by L1, one recovery."""
    opts, rest = split_options(kw)
    no_extra("admm", rest)
    target = as_target(target, ratio)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    history: dict[str, Any] = {"admm_iterations": []}
    teacher = teacher_of(model, opts)
    ex = default_inputs(train_loader, example_inputs)
    graph = trace_model(model, ex, opts)
    base = cost(graph)
    t0 = time.perf_counter()
    l1 = score(model, graph, "l1", None)
    alloc = plan_step(model, graph, l1, policy, target, ratio, min_channels, max_ratio, policy_kw)
    counts = {d.name: len(d.removed) for d in alloc.decisions}
    params = dict(model.named_parameters())
    groups = []
    for g in graph.prunable_groups():
        if counts.get(g.name):
            prods = [(m, params[m.key]) for m in g.producers() if m.key in params]
            if prods:
                groups.append(_GroupADMM(g, prods, counts[g.name]))
    for a in groups:
        a.z_step()
    timings["allocate"] = time.perf_counter() - t0
    holder = {"rho": float(rho)}

    def admm_term(m, batch, outputs, loss):
        return 0.5 * holder["rho"] * sum(a.penalty() for a in groups)

    def on_epoch(trainer, epoch: int, record: dict) -> None:
        if epoch % epochs_per_iteration:
            return
        for a in groups:
            a.z_step()
            a.u_step()
        num, den = map(sum, zip(*(a.residual() for a in groups))) if groups else (0.0, 1.0)
        history["admm_iterations"].append({"epoch": epoch, "rho": holder["rho"],
                                           "residual": (num / max(den, 1e-30)) ** 0.5})
        holder["rho"] *= rho_growth

    t0 = time.perf_counter()
    cfg = opts.config(iterations * epochs_per_iteration, admm_lr if admm_lr is not None else opts.lr)
    history["admm"], trainer = train(model, train_loader, val_loader, cfg, opts, loss_terms=[admm_term],
                                     epoch_callbacks=[on_epoch])
    timings["admm"] = time.perf_counter() - t0
    # the filters ADMM drove toward zero, against the ones it keeps (L2 norms, before pruning)
    removed_n, kept_n = [], []
    for a in groups:
        w = [p.detach() for _, p in a.params]
        n = a.norms(w)
        drop = set(a.dropped([z for z in a.Z]))
        removed_n += [float(n[c]) for c in drop]
        kept_n += [float(n[c]) for c in range(a.g.size) if c not in drop]
    t0 = time.perf_counter()
    l1 = score(model, graph, "l1", None)
    meta = {"method": "admm", "criterion": "l1", "policy": policy, "ratio": ratio,
            "target": target.items() if target else None, "rho": rho, "rho_growth": rho_growth,
            "iterations": iterations, "epochs_per_iteration": epochs_per_iteration}
    from ..graph.plan import PruningPlan
    from ..policies import select_kept
    plan = PruningPlan.from_kept(graph, select_kept(graph, l1, counts), meta)
    apply(model, plan)
    graph = shrink_graph(graph, plan, model)
    timings["prune"] = time.perf_counter() - t0
    recover(model, teacher, train_loader, val_loader, opts, timings, history)
    timings["total"] = time.perf_counter() - t_start
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return model, summary("admm", base, graph, plan, timings, history, criterion="l1", policy=policy,
                          removed_norm=mean(removed_n), kept_norm=mean(kept_n))
