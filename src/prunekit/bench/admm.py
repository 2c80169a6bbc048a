"""Suite `admm` (single-shot channel pruning with ADMM, arXiv 1902.06382): ADMM training toward k filters per
layer, one prune by L1, one fine-tune; against one-shot L1 without ADMM (with the shared fine-tuning budget,
and with as many optimizer steps in all as ADMM gets) and the iterative L1 loop, at equal MAC targets."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import common, output
from ..workflow import WorkflowConfig, check_workflow
from .config import BenchConfig, opt_int
from .plots import standard_plots
from .rows import SuiteRows

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"finetune_steps": 30},
    "quick": {"finetune_steps": 2},
    # ADMM: K iterations of one capped epoch each (rho grows per iteration), then the shared fine-tune
    "opts": {"rho": 1.0, "rho_growth": 2.0, "iterations": 4, "policy": "uniform"},
    "quick_opts": {"iterations": 2},
}

COLUMNS: list[output.Column] = [
    ("arch", lambda r: r["arch"]),
    ("MACs target", lambda r: output.pct(r["target"], 0)),
    ("method", lambda r: r["method"]),
    ("optimizer steps", lambda r: output.num(r["train_steps"], ".0f")),
    ("top-1 % (mean ± sd)", output.acc),
    ("Δ top-1 vs base (pts)", lambda r: output.num(None if r["delta"] is None else 100 * r["delta"], "+.2f")),
    ("MACs kept", lambda r: output.pct(r["macs_kept"])),
    ("params kept", lambda r: output.pct(r["params_kept"])),
    ("total time (s)", lambda r: output.num(r["total_s"], ".1f")),
    ("removed / kept filter norm", lambda r: "-" if r.get("removed_norm") is None
     else f"{r['removed_norm']:.3g} / {r['kept_norm']:.3g}"),
    ("seeds", lambda r: r["n_seeds"]),
]


def method_specs(cfg: BenchConfig, steps_per_epoch: int) -> dict[str, tuple[str, dict[str, Any], int]]:
    """label -> (method, keyword arguments, optimizer steps in all). An epoch is cfg.finetune_steps optimizer
    steps (the default budget) or a whole pass over the training set (finetune_steps None)."""
    m = int(cfg.finetune_steps or steps_per_epoch)
    k, e = opt_int("admm", cfg.opts, "iterations"), int(cfg.finetune_epochs)
    pol = cfg.opts["policy"]
    return {
        "admm + l1": ("admm", {"policy": pol, "rho": cfg.opts["rho"], "rho_growth": cfg.opts["rho_growth"],
                               "iterations": k, "epochs_per_iteration": 1}, (k + e) * m),
        "one-shot l1": ("oneshot", {"criterion": "l1", "policy": pol}, e * m),
        "one-shot l1, ADMM's steps": ("oneshot", {"criterion": "l1", "policy": pol, "finetune_epochs": k + e},
                                      (k + e) * m),
        "iterative l1": ("iterative", {"criterion": "l1", "policy": pol, "steps": k + 1, "step_epochs": 1},
                         (k + e) * m),
    }


KEYS = ("arch", "target", "method", "seed")
RESUMABLE = True
NOT_READ = {"score_batches": "every row of this suite scores with l1, which reads no batches"}


def row_config(cfg: BenchConfig, arch: str, width: float, method: str, kw: dict[str, Any], seed: int,
               target: float) -> WorkflowConfig:
    """The workflow config of one row: `method` with its spec's keywords `kw` (method_specs)."""
    kw = dict(kw)
    return common.workflow_config(cfg, arch, width, method, seed, target, criterion=kw.pop("criterion", None),
                                  policy=kw.pop("policy"), finetune_epochs=kw.pop("finetune_epochs", None),
                                  options=kw)


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/admm")
    data = common.load_data(cfg)
    specs = method_specs(cfg, steps_per_epoch=len(data.train_loader(0)))
    for method, kw, _ in specs.values():  # a bad --opt (rho, iterations, policy) is refused before any training
        check_workflow(row_config(cfg, *cfg.archs[0], method, kw, cfg.seeds[0], cfg.targets[0]))
    rows = SuiteRows(out, cfg, KEYS, resume=cfg.resume)
    bases: dict[str, Any] = {}
    n_all = len(cfg.archs) * len(cfg.targets) * len(specs) * len(cfg.seeds)
    results: dict[str, Any] = {}
    for arch, width in cfg.archs:
        entry = common.finished_base(cfg, data, rows, out, arch, width, list(specs))
        if entry is not None:  # nothing left to run on this base: its weights are not needed
            bases[arch] = entry
            continue
        base, bases[arch] = common.prepare_base(cfg, data, arch, width)
        for seed in cfg.seeds:
            for target in cfg.targets:
                for label, (method, kw, steps) in specs.items():
                    if rows.done(arch=arch, target=target, method=label, seed=seed) is not None:
                        continue
                    t0 = time.perf_counter()
                    wcfg = row_config(cfg, arch, width, method, kw, seed, target)
                    model, rep, result = common.run_row(base, data, wcfg)
                    row = common.measure_row(model, data, bases[arch], cfg, dense=base, result=result)
                    row.update(arch=arch, width=width, target=target, method=label, seed=seed, train_steps=steps,
                               delta=row["top1"] - bases[arch]["top1"], total_s=rep.timings["total"],
                               timings=rep.timings, removed_norm=rep.get("removed_norm"),
                               kept_norm=rep.get("kept_norm"), admm=rep.history.get("admm_iterations"),
                               wall_s=time.perf_counter() - t0)
                    rows.add(row)
                    common.log(f"[{len(rows.runs)}/{n_all}] {arch} {100 * target:.0f}% {label} seed {seed}: top-1 "
                               f"{100 * row['top1']:.2f}% ({row['wall_s']:.0f} s)")
                    results = write(cfg, out, rows.runs, bases, specs, started)  # every finished row lands
    return results if results else write(cfg, out, rows.runs, bases, specs, started)


def write(cfg: BenchConfig, out: Path, runs: list[dict[str, Any]], bases: dict[str, Any],
          specs: dict[str, tuple[str, dict[str, Any], int]], started: float) -> dict[str, Any]:
    """results.json / runs.json / results.md / plots from the rows finished so far."""
    archs = [a for a, _ in cfg.archs]
    table = common.aggregate(runs, ("arch", "target", "method"),
                             ("top1", "delta", "macs_kept", "params_kept", "speedup", "total_s", "train_steps",
                              "removed_norm", "kept_norm"),
                             order=lambda r: (archs.index(r["arch"]), -r["target"], list(specs).index(r["method"])))
    notes = []
    for r in table:
        if r["method"] == "admm + l1" and r.get("removed_norm") is not None:
            notes.append(f"{r['arch']} at {100 * r['target']:.0f}% MACs: after ADMM the filters it removes have mean "
                         f"L2 norm {r['removed_norm']:.3g} against {r['kept_norm']:.3g} for the kept ones.")
    for arch in bases:
        for target in cfg.targets:
            ranked = sorted((r for r in table if r["arch"] == arch and r["target"] == target), key=lambda r: -r["top1"])
            if ranked:
                notes.append(f"{arch} at {100 * target:.0f}% MACs: " + " > ".join(
                    f"{r['method']} {100 * r['top1']:.2f}%" for r in ranked) + ".")
    plots = standard_plots(out, cfg, runs, table, bases)
    k = cfg.opts["iterations"]
    epoch = (f"{cfg.finetune_steps} optimizer steps" if cfg.finetune_steps else "a whole epoch")
    intro = (f"Fashion-MNIST; one cached base per architecture; allocation `{cfg.opts['policy']}` for every method "
             f"(ADMM's k_i per layer = the uniform allocation on the dense model), L1 picks the filters. An epoch "
             f"here is {epoch}; the shared fine-tuning is {cfg.finetune_epochs} epoch(s). ADMM: {k} iterations of "
             f"one epoch (rho {cfg.opts['rho']}, x{cfg.opts['rho_growth']} per iteration), prune by L1, the shared "
             f"fine-tuning. one-shot l1: prune, the shared fine-tuning. one-shot l1, ADMM's steps: prune, "
             f"{k + cfg.finetune_epochs} epochs (the same number of optimizer steps as ADMM). iterative l1: "
             f"{k + 1} prune steps, one epoch after each but the last, then the shared fine-tuning. "
             + common.bases_intro(bases) + common.progress_note(cfg, runs, len(specs)))
    return output.write_suite(out, cfg, "Single-shot ADMM channel pruning vs one-shot and iterative L1", intro,
                              table, COLUMNS, runs, plots, notes, info=common.bases_info(bases), started=started)
