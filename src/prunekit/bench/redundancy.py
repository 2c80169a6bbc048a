"""Suite `redundancy`: where to cut (SRR 2104.03438, the statistical redundancy study 1905.06498) against
global and uniform allocation, random filter choice, the from-scratch control (Liu et al. 2019) and
torch-pruning's group-norm pruner, on one trained base per architecture, at equal MAC targets and budget."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from . import common, output, peer
from .config import BenchConfig
from .plots import standard_plots
from .rows import SuiteRows

PRESETS: dict[str, dict[str, Any]] = {"default": {}, "quick": {}}

# label -> (method, keyword arguments); every one gets the same fine-tuning budget and seeds
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "srr+l1": ("srr", {"criterion": "l1", "policy": "srr"}),
    "width+random": ("oneshot", {"criterion": "random", "policy": "width"}),
    "global taylor": ("oneshot", {"criterion": "taylor", "policy": "global"}),
    "global l1": ("oneshot", {"criterion": "l1", "policy": "global"}),
    "uniform l1": ("oneshot", {"criterion": "l1", "policy": "uniform"}),
    "uniform random": ("oneshot", {"criterion": "random", "policy": "uniform"}),
    "scratch (srr+l1 arch)": ("srr", {"criterion": "l1", "policy": "srr", "from_scratch": True}),
}
PEER = "torch-pruning group-norm (global)"

COLUMNS: list[output.Column] = [
    ("arch", lambda r: r["arch"]),
    ("MACs target", lambda r: output.pct(r["target"], 0)),
    ("method", lambda r: r["method"]),
    ("top-1 % (mean ± sd)", output.acc),
    ("Δ top-1 vs base (pts)", lambda r: output.num(None if r["delta"] is None else 100 * r["delta"], "+.2f")),
    ("MACs kept", lambda r: output.pct(r["macs_kept"])),
    ("params kept", lambda r: output.pct(r["params_kept"])),
    ("CPU speedup (torch, large batch)", lambda r: output.num(r["speedup"], ".2f", "x")),
    ("seeds", lambda r: r["n_seeds"]),
]


KEYS = ("arch", "target", "method", "seed")
RESUMABLE = True


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/redundancy")
    data = common.load_data(cfg)
    labels = list(METHODS) + ([PEER] if cfg.peer and peer.available() else [])
    rows = SuiteRows(out, cfg, KEYS, resume=cfg.resume)
    bases: dict[str, Any] = {}
    peer_cache: dict[tuple, Any] = {}
    total = len(cfg.archs) * len(cfg.targets) * len(labels) * len(cfg.seeds)
    results: dict[str, Any] = {}
    for arch, width in cfg.archs:
        entry = common.finished_base(cfg, data, rows, out, arch, width, labels)
        if entry is not None:  # nothing left to run on this base: its weights are not needed
            bases[arch] = entry
            continue
        base, bases[arch] = common.prepare_base(cfg, data, arch, width)
        for seed in cfg.seeds:
            for target in cfg.targets:
                for label in labels:
                    if rows.done(arch=arch, target=target, method=label, seed=seed) is not None:
                        continue
                    row = _row(cfg, data, base, bases[arch], arch, width, target, label, seed, peer_cache)
                    rows.add(row)
                    common.log(f"[{len(rows.runs)}/{total}] {arch} {100 * target:.0f}% {label} seed {seed}: "
                               f"top-1 {100 * row['top1']:.2f}%, MACs kept {100 * row['macs_kept']:.1f}%, "
                               f"speedup {row['speedup']:.2f}x ({row['wall_s']:.0f} s)")
                    results = write(cfg, out, rows.runs, bases, labels, started)  # every finished row lands
    return results if results else write(cfg, out, rows.runs, bases, labels, started)


def _row(cfg: BenchConfig, data: common.Data, base: Any, entry: dict[str, Any], arch: str, width: float,
         target: float, label: str, seed: int, peer_cache: dict[tuple, Any]) -> dict[str, Any]:
    """One run: prune `base` with `label`'s method to `target`, fine-tune, measure."""
    t0 = time.perf_counter()
    result = None
    if label == PEER:
        ex = data.example()
        if (arch, target) not in peer_cache:  # deterministic: searched once per arch and target
            peer_cache[(arch, target)] = peer.prune_to_macs(base, ex, target, iterations=6 if cfg.quick else 12)
        model, pinfo = copy.deepcopy(peer_cache[(arch, target)][0]), peer_cache[(arch, target)][1]
        t_prune = time.perf_counter() - t0
        timings = {"prune": t_prune, **common.finetune(model, data, cfg, seed)}
        model.eval()
        extra = {"peer": pinfo}
    else:
        method, kw = METHODS[label]
        kw = dict(kw)
        wcfg = common.workflow_config(cfg, arch, width, method, seed, target, criterion=kw.pop("criterion"),
                                      policy=kw.pop("policy"), from_scratch=kw.pop("from_scratch", False),
                                      score_batches=common.ranking_batches(cfg, data), options=kw)
        model, rep, result = common.run_row(base, data, wcfg)
        timings = rep.timings
        extra = {}
    row = common.measure_row(model, data, entry, cfg, dense=base, result=result)
    row.update(arch=arch, width=width, target=target, method=label, seed=seed, base_top1=entry["top1"],
               delta=row["top1"] - entry["top1"], timings=timings, wall_s=time.perf_counter() - t0, **extra)
    return row


def write(cfg: BenchConfig, out: Path, runs: list[dict[str, Any]], bases: dict[str, Any], labels: list[str],
          started: float) -> dict[str, Any]:
    """results.json / runs.json / results.md / plots from the rows finished so far."""
    order = {lab: i for i, lab in enumerate(labels)}
    archs = [a for a, _ in cfg.archs]
    table = common.aggregate(runs, ("arch", "target", "method"),
                             ("top1", "delta", "macs_kept", "params_kept", "speedup"),
                             order=lambda r: (archs.index(r["arch"]), -r["target"], order[r["method"]]))
    plots = standard_plots(out, cfg, runs, table, bases)
    notes = observations(table, bases)
    intro = ("Fashion-MNIST; one trained base per architecture (cached, shared by every method); every method "
             "is fine-tuned with the same budget and seeds (see Budget). top-1 on the test subset; MACs and "
             "parameters counted by prunekit from the executed ops; speedup = dense / pruned median latency, "
             f"torch on CPU at batch {max(cfg.latency_batches)} with {cfg.threads} thread(s), the two models "
             "timed in alternation. " + common.bases_intro(bases) + " The from-scratch control "
             "re-initialises the srr+l1 architecture and trains it with the same budget at 10x the fine-tuning "
             "learning rate; " + (f"`{PEER}` is torch-pruning's MetaPruner with group-norm (L2) importance, "
                                  "global ranking, its pruning ratio searched to the MAC target, fine-tuned by prunekit."
                                  if PEER in labels else "torch-pruning is not installed: no peer rows.")
             + common.progress_note(cfg, runs, len(labels)))
    return output.write_suite(out, cfg, "Redundancy: where to prune (SRR, width, global, uniform, scratch, peer)",
                              intro, table, COLUMNS, runs, plots, notes,
                              info=common.bases_info(bases), started=started)


def observations(table: list[dict], bases: dict) -> list[str]:
    """Per (arch, target): the best and worst methods by mean top-1, and where SRR and the controls rank."""
    notes = []
    for arch in bases:
        for target in sorted({r["target"] for r in table if r["arch"] == arch}, reverse=True):
            rows = sorted((r for r in table if r["arch"] == arch and r["target"] == target),
                          key=lambda r: -(r["top1"] or 0))
            if not rows:
                continue
            rank = {r["method"]: i + 1 for i, r in enumerate(rows)}
            best, worst = rows[0], rows[-1]
            srr = next((r for r in rows if r["method"] == "srr+l1"), None)
            text = (f"{arch} at {100 * target:.0f}% MACs: best {best['method']} {100 * best['top1']:.2f}%, worst "
                    f"{worst['method']} {100 * worst['top1']:.2f}%")
            if srr is not None and srr is not best:
                text += f"; srr+l1 ranks {rank['srr+l1']} of {len(rows)} ({100 * (srr['top1'] - best['top1']):+.2f} pts from the best)"
            notes.append(text + ".")
    return notes
