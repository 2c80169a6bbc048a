"""Suite `coarse` (coarse ranking, arXiv 1902.06385): `coarse` (taylor accumulated from the fine-tuning steps
themselves, a prune every K steps) against the classic `iterative` loop (a separate taylor ranking pass, prune,
K steps of fine-tuning, repeated), with the same number of prunes, the same cumulative MAC schedule (so the
same number of channels removed per step, uniform allocation) and the same total number of optimizer steps."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import common, output
from ..workflow import check_workflow
from .config import BenchConfig, opt_int
from .plots import plot_time_split, standard_plots
from .rows import SuiteRows

# opts: every = K optimizer steps between prunes; prunes = S; finetune_steps = T total optimizer steps
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"finetune_steps": 78, "score_batches": 8},
    "quick": {"finetune_steps": 4, "score_batches": 1},
    "opts": {"every": 10, "prunes": 4, "criterion": "taylor", "policy": "uniform"},
    "quick_opts": {"every": 1, "prunes": 2},
    # the paper's setting: 8 prunes, each iterative ranking pass reads the whole training set (60,000 images)
    "full": {"score_batches": 0},
    "full_opts": {"every": 30, "prunes": 8},
}

COLUMNS: list[output.Column] = [
    ("arch", lambda r: r["arch"]),
    ("MACs target", lambda r: output.pct(r["target"], 0)),
    ("method", lambda r: r["method"]),
    ("top-1 % (mean ± sd)", output.acc),
    ("MACs kept", lambda r: output.pct(r["macs_kept"])),
    ("optimizer steps", lambda r: output.num(r["train_steps"], ".0f")),
    ("extra ranking batches", lambda r: output.num(r["ranking_batches"], ".0f")),
    ("total time (s)", lambda r: output.num(r["total_s"], ".1f")),
    ("ranking time (s)", lambda r: output.num(r["ranking_s"], ".2f")),
    ("ranking share", lambda r: output.pct(r["ranking_share"])),
    ("time saved vs iterative", lambda r: "-" if r.get("saved") is None else output.pct(r["saved"])),
    ("CPU time (s)", lambda r: output.num(r.get("cpu_s"), ".1f")),
    ("CPU time saved", lambda r: "-" if r.get("cpu_saved") is None else output.pct(r["cpu_saved"])),
    ("seeds", lambda r: r["n_seeds"]),
]


KEYS = ("arch", "target", "method", "seed")
RESUMABLE = True


@dataclass
class Schedule:
    """The two methods' step budgets: S prunes every K steps, T optimizer steps in all for each method.
    capped: T steps in one capped epoch (finetune_steps = T); else finetune_epochs whole epochs."""

    every: int
    prunes: int
    total: int
    epochs: int
    capped: bool
    final_cap: int | None  # iterative's final fine-tuning: optimizer steps per epoch

    def coarse_kw(self) -> dict[str, Any]:  # prunes at K, 2K, ..., SK of T steps; the rest recovers
        return {"finetune_epochs": self.epochs, "max_steps_per_epoch": self.total if self.capped else None,
                "options": {"every": self.every, "prunes": self.prunes}}

    def iterative_kw(self) -> dict[str, Any]:  # S ranking passes; K steps after each prune but the last
        return {"finetune_epochs": self.epochs, "max_steps_per_epoch": self.final_cap,
                "options": {"steps": self.prunes, "step_epochs": 1, "step_max_steps": self.every}}


def schedule(cfg: BenchConfig, steps_per_epoch: int) -> Schedule:
    """finetune_steps T: one epoch capped at T steps (iterative: T - (S-1)K after its last prune). None: the
    shared finetune_epochs E whole epochs (iterative: E epochs of steps_per_epoch - (S-1)K/E steps), so both
    methods take the same number of optimizer steps."""
    every, prunes = opt_int("coarse", cfg.opts, "every"), opt_int("coarse", cfg.opts, "prunes")
    between = (prunes - 1) * every
    if cfg.finetune_steps:
        total = int(cfg.finetune_steps)
        if total < prunes * every:
            raise ValueError(f"coarse: {prunes} prunes every {every} steps need finetune_steps >= {prunes * every}")
        if steps_per_epoch < total:
            raise ValueError(f"coarse: {total} steps per epoch need {total} batches per epoch, the data gives "
                             f"{steps_per_epoch}")
        return Schedule(every, prunes, total, 1, True, total - between)
    epochs = int(cfg.finetune_epochs)
    total = epochs * steps_per_epoch
    if epochs < 1 or total < prunes * every or between % epochs or between // epochs >= steps_per_epoch:
        raise ValueError(f"coarse: {prunes} prunes every {every} steps over {epochs} epoch(s) of {steps_per_epoch} "
                         f"steps: need (prunes - 1) * every ({between}) divisible by finetune_epochs and "
                         f"prunes * every <= {total}")
    return Schedule(every, prunes, total, epochs, False, steps_per_epoch - between // epochs)


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/coarse")
    crit, policy = cfg.opts["criterion"], cfg.opts["policy"]
    data = common.load_data(cfg)
    sched = schedule(cfg, len(data.train_loader(0)))
    rank_batches = common.ranking_batches(cfg, data)
    for method in ("iterative", "coarse"):  # a bad --opt (criterion, policy) is refused before any training
        arch, width = cfg.archs[0]
        kw = sched.coarse_kw() if method == "coarse" else sched.iterative_kw()
        check_workflow(common.workflow_config(cfg, arch, width, method, cfg.seeds[0], cfg.targets[0],
                                              criterion=crit, policy=policy, score_batches=rank_batches, **kw))
    rows = SuiteRows(out, cfg, KEYS, resume=cfg.resume)
    bases: dict[str, Any] = {}
    n_all = len(cfg.archs) * len(cfg.targets) * 2 * len(cfg.seeds)
    results: dict[str, Any] = {}
    for arch, width in cfg.archs:
        entry = common.finished_base(cfg, data, rows, out, arch, width, ["iterative", "coarse"])
        if entry is not None:  # nothing left to run on this base: its weights are not needed
            bases[arch] = entry
            continue
        base, bases[arch] = common.prepare_base(cfg, data, arch, width)
        for seed in cfg.seeds:
            for target in cfg.targets:
                for method in ("iterative", "coarse"):
                    if rows.done(arch=arch, target=target, method=method, seed=seed) is not None:
                        continue
                    kw = sched.coarse_kw() if method == "coarse" else sched.iterative_kw()
                    wcfg = common.workflow_config(cfg, arch, width, method, seed, target, criterion=crit,
                                                  policy=policy, score_batches=rank_batches, **kw)
                    t0 = time.perf_counter()
                    model, rep, result = common.run_row(base, data, wcfg)
                    row = common.measure_row(model, data, bases[arch], cfg, dense=base, result=result)
                    t = rep.timings
                    coarse_run = method == "coarse"
                    row.update(arch=arch, width=width, target=target, method=method, seed=seed,
                               total_s=t["total"], cpu_s=t["cpu"],
                               ranking_s=t["ranking"] if coarse_run else t["score"],
                               train_steps=rep.get("training_steps") if coarse_run else sched.total,
                               ranking_batches=0 if coarse_run else sched.prunes * rank_batches,
                               forward_calls=rep.get("forward_calls"), timings=t,
                               steps=rep.history.get("prunes") if coarse_run else rep.history.get("steps"),
                               wall_s=time.perf_counter() - t0)
                    row["ranking_share"] = row["ranking_s"] / max(1e-9, row["total_s"])
                    rows.add(row)
                    common.log(f"[{len(rows.runs)}/{n_all}] {arch} {100 * target:.0f}% {method} seed {seed}: top-1 "
                               f"{100 * row['top1']:.2f}%, total {row['total_s']:.1f} s, ranking {row['ranking_s']:.2f} s")
                    results = write(cfg, out, rows.runs, bases, sched, rank_batches, started)
    return results if results else write(cfg, out, rows.runs, bases, sched, rank_batches, started)


def write(cfg: BenchConfig, out: Path, runs: list[dict[str, Any]], bases: dict[str, Any], sched: Schedule,
          rank_batches: int, started: float) -> dict[str, Any]:
    """results.json / runs.json / results.md / plots from the rows finished so far."""
    crit, policy = cfg.opts["criterion"], cfg.opts["policy"]
    archs = [a for a, _ in cfg.archs]
    table = common.aggregate(runs, ("arch", "target", "method"),
                             ("top1", "macs_kept", "params_kept", "speedup", "total_s", "cpu_s", "ranking_s",
                              "ranking_share",
                              "train_steps", "ranking_batches"),
                             order=lambda r: (archs.index(r["arch"]), -r["target"], r["method"] != "iterative"))
    notes = savings(table)
    plots = standard_plots(out, cfg, runs, table, bases)
    split = [{"label": f"{r['arch']} {100 * r['target']:.0f}% {r['method']}", "ranking_s": r["ranking_s"],
              "total_s": r["total_s"]} for r in table]
    plots.append(plot_time_split(split, out / "time_split.png", "coarse vs iterative: where the time goes").name)
    s, k, t = sched.prunes, sched.every, sched.total
    recovery = (f"then {t - s * k} steps of recovery" if sched.capped else
                f"within {sched.epochs} whole epoch(s) of {t // sched.epochs} steps")
    final = (f"then {t - (s - 1) * k} steps of recovery" if sched.capped else
             f"then {sched.epochs} epoch(s) of {sched.final_cap} steps")
    intro = (f"Fashion-MNIST; one cached base per architecture. Both methods rank with `{crit}` and allocate with "
             f"`{policy}`, prune {s} times with the same cumulative MAC schedule toward the target and run "
             f"{t} optimizer steps in all (coarse: a prune every {k} steps, {recovery}; iterative: a separate "
             f"ranking pass of {rank_batches} batches of {cfg.batch_size} before each prune, {k} steps after each "
             f"prune but the last, {final}). Ranking time: coarse = hooks on the training steps + scoring + "
             "allocation; iterative = its ranking passes. Total time: the whole method (trace to last optimizer "
             "step), wall clock, one pinned thread on a shared 2-core machine; CPU time: the process CPU seconds "
             "of the whole row (prune, recover, measure), which other jobs and pauses do not inflate. " + common.bases_intro(bases)
             + common.progress_note(cfg, runs, 2))
    return output.write_suite(out, cfg, f"Coarse ranking vs the iterative rank-prune-fine-tune loop ({crit})", intro,
                              table, COLUMNS, runs, plots, notes, info=common.bases_info(bases), started=started)


def savings(table: list[dict[str, Any]]) -> list[str]:
    """Per (arch, target) with both methods: coarse's accuracy difference and the time it saves (set on the
    coarse row as `saved` and `ranking_saved`)."""
    notes = []
    for r in table:
        it = next((x for x in table if x["arch"] == r["arch"] and x["target"] == r["target"]
                   and x["method"] == "iterative"), None)
        if r["method"] != "coarse" or it is None:
            continue
        r["saved"] = 1 - r["total_s"] / it["total_s"]
        r["cpu_saved"] = None if not (r.get("cpu_s") and it.get("cpu_s")) else 1 - r["cpu_s"] / it["cpu_s"]
        cpu = "" if r["cpu_saved"] is None else (f"; CPU time (the whole row, one thread) {r['cpu_s']:.0f} s vs "
                                                 f"{it['cpu_s']:.0f} s ({100 * r['cpu_saved']:.1f}% saved)")
        r["ranking_saved"] = 1 - r["ranking_s"] / max(1e-9, it["ranking_s"])
        notes.append(f"{r['arch']} at {100 * r['target']:.0f}% MACs: coarse {100 * r['top1']:.2f}% vs iterative "
                     f"{100 * it['top1']:.2f}% ({100 * (r['top1'] - it['top1']):+.2f} pts); total time "
                     f"{r['total_s']:.1f} s vs {it['total_s']:.1f} s ({100 * r['saved']:.1f}% saved); ranking "
                     f"{r['ranking_s']:.2f} s vs {it['ranking_s']:.2f} s ({100 * r['ranking_saved']:.0f}% less); "
                     f"the iterative loop spends {100 * it['ranking_share']:.0f}% of its time ranking{cpu}.")
    return notes
