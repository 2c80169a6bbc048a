"""Suite `coarse` (coarse ranking, arXiv 1902.06385): `coarse` (taylor accumulated from the fine-tuning steps
themselves, a prune every K steps) against the classic `iterative` loop (a separate taylor ranking pass, prune,
K steps of fine-tuning, repeated), with the same number of prunes, the same cumulative MAC schedule (so the
same number of channels removed per step, uniform allocation) and the same total number of optimizer steps."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import common, output
from .config import BenchConfig
from .plots import plot_time_split, standard_plots

# opts: every = K optimizer steps between prunes; prunes = S; finetune_steps = T total optimizer steps
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"finetune_steps": 78, "score_batches": 8},
    "quick": {"finetune_steps": 4, "score_batches": 1},
    "opts": {"every": 10, "prunes": 4, "criterion": "taylor", "policy": "uniform"},
    "quick_opts": {"every": 1, "prunes": 2},
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
    ("seeds", lambda r: r["n_seeds"]),
]


def _settings(cfg: BenchConfig) -> tuple[int, int, int]:
    every, prunes, total = int(cfg.opts["every"]), int(cfg.opts["prunes"]), int(cfg.finetune_steps or 0)
    if total < prunes * every:
        raise ValueError(f"coarse: {prunes} prunes every {every} steps need finetune_steps >= {prunes * every}")
    return every, prunes, total


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/coarse")
    every, prunes, total = _settings(cfg)
    crit, policy = cfg.opts["criterion"], cfg.opts["policy"]
    data = common.load_data(cfg)
    if len(data.train_loader(0)) < total:
        raise ValueError(f"coarse: {total} steps per epoch need {total * cfg.batch_size} training samples")
    runs: list[dict[str, Any]] = []
    bases: dict[str, Any] = {}
    n_all = len(cfg.archs) * len(cfg.targets) * 2 * len(cfg.seeds)
    for arch, width in cfg.archs:
        base, bases[arch] = common.prepare_base(cfg, data, arch, width)
        for target in cfg.targets:
            for method in ("iterative", "coarse"):
                for seed in cfg.seeds:
                    if method == "coarse":  # prunes at K, 2K, ..., SK of T steps, then T - SK steps of recovery
                        kw = dict(criterion=crit, policy=policy, every=every, prunes=prunes,
                                  **common.recovery_kwargs(cfg, seed, max_steps_per_epoch=total, finetune_epochs=1))
                    else:  # S ranking passes; K steps after each prune but the last, then T - (S-1)K steps
                        kw = dict(criterion=crit, policy=policy, steps=prunes, step_epochs=1, step_max_steps=every,
                                  score_batches=cfg.score_batches,
                                  **common.recovery_kwargs(cfg, seed, finetune_epochs=1,
                                                           max_steps_per_epoch=total - (prunes - 1) * every))
                    t0 = time.perf_counter()
                    model, rep = common.run_method(base, data, method, target={"macs": target}, **kw)
                    row = common.measure_row(model, data, bases[arch], cfg, dense=base)
                    t = rep["timings"]
                    coarse_run = method == "coarse"
                    row.update(arch=arch, width=width, target=target, method=method, seed=seed,
                               total_s=t["total"], ranking_s=t["ranking"] if coarse_run else t["score"],
                               train_steps=rep.get("training_steps") if coarse_run else total,
                               ranking_batches=0 if coarse_run else prunes * cfg.score_batches,
                               forward_calls=rep.get("forward_calls"), timings=t,
                               steps=rep["history"].get("prunes") if coarse_run else rep["history"].get("steps"),
                               wall_s=time.perf_counter() - t0)
                    row["ranking_share"] = row["ranking_s"] / max(1e-9, row["total_s"])
                    runs.append(row)
                    common.log(f"[{len(runs)}/{n_all}] {arch} {100 * target:.0f}% {method} seed {seed}: top-1 "
                               f"{100 * row['top1']:.2f}%, total {row['total_s']:.1f} s, ranking {row['ranking_s']:.2f} s")
    table = common.aggregate(runs, ("arch", "target", "method"),
                             ("top1", "macs_kept", "params_kept", "speedup", "total_s", "ranking_s", "ranking_share",
                              "train_steps", "ranking_batches"),
                             order=lambda r: ([a for a, _ in cfg.archs].index(r["arch"]), -r["target"], r["method"] != "iterative"))
    notes = []
    for r in table:
        if r["method"] != "coarse":
            continue
        it = next(x for x in table if x["arch"] == r["arch"] and x["target"] == r["target"] and x["method"] == "iterative")
        r["saved"] = 1 - r["total_s"] / it["total_s"]
        r["ranking_saved"] = 1 - r["ranking_s"] / max(1e-9, it["ranking_s"])
        notes.append(f"{r['arch']} at {100 * r['target']:.0f}% MACs: coarse {100 * r['top1']:.2f}% vs iterative "
                     f"{100 * it['top1']:.2f}% ({100 * (r['top1'] - it['top1']):+.2f} pts); total time "
                     f"{r['total_s']:.1f} s vs {it['total_s']:.1f} s ({100 * r['saved']:.1f}% saved); ranking "
                     f"{r['ranking_s']:.2f} s vs {it['ranking_s']:.2f} s ({100 * r['ranking_saved']:.0f}% less).")
    plots = standard_plots(out, cfg, runs, table, bases)
    split = [{"label": f"{r['arch']} {100 * r['target']:.0f}% {r['method']}", "ranking_s": r["ranking_s"],
              "total_s": r["total_s"]} for r in table]
    plots.append(plot_time_split(split, out / "time_split.png", "coarse vs iterative: where the time goes").name)
    intro = (f"Fashion-MNIST; one cached base per architecture. Both methods rank with `{crit}` and allocate with "
             f"`{policy}`, prune {prunes} times with the same cumulative MAC schedule toward the target and run "
             f"{total} optimizer steps in all (coarse: a prune every {every} steps, then {total - prunes * every} "
             f"steps of recovery; iterative: a separate ranking pass of {cfg.score_batches} batches before each prune, "
             f"{every} steps after each prune but the last, then {total - (prunes - 1) * every} steps of recovery). "
             "Ranking time: coarse = hooks on the training steps + scoring + allocation; iterative = its ranking "
             "passes. Total time: the whole method (trace to last optimizer step), wall clock on a shared "
             "2-core machine. " + common.bases_intro(bases))
    return output.write_suite(out, cfg, "Coarse ranking vs the iterative rank-prune-fine-tune loop (taylor)", intro,
                              table, COLUMNS, runs, plots, notes, info=common.bases_info(bases), started=started)
