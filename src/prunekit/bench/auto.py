"""`prunekit bench auto`: the `auto` policy against one-knob policies (uniform, srr, global) at equal measured
latency (default 50% and 30% of dense) on Fashion-MNIST ResNet-20: test accuracy after a short fine-tune,
measured latency, and the latency model's prediction error on held-back real models. Writes results.json and
results.md. Also runnable as `python benchmarks/auto.py`.

Every row is one `run_workflow` on a copy of the same trained base: the oneshot method, l1 within the groups its
policy chose, planned and checked by the one planning path, then the same fine-tuning budget and seed. A
one-knob policy is put at a latency by bisecting its knob on the latency model's prediction; every method (auto
included) is then measured for real and its goal corrected toward the target.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk

from ..criteria import get_criterion
from ..data import Loaders, dataset_info, get_dataset, make_loader
from ..data.provenance import data_read
from ..measure import measure_latency
from ..measure.latency import cpu_name
from ..models import create
from ..policies import get_policy, list_policies
from ..policies.auto_search import knob_counts, meet_latency
from ..policies.latency_layers import cache_dir
from ..policies.latency_model import LatencyModel
from ..train import TrainConfig, evaluate
from ..utils import argtypes as T
from ..utils import atomic_write
from ..train.checkpoint import read_checked
from ..workflow import (MODEL_FILE, BaseConfig, DataConfig, ModelConfig, PruneConfig, RecoverConfig, RunData,
                        WorkflowConfig, load_model, prepare_output_dir, run_workflow, train_base)

DEFAULT_OUT = "benchmarks/results/auto"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--methods", nargs="+", default=["auto", "auto-nohw", "uniform", "srr", "global"],
                   help="auto, auto-nohw (no hardware-friendly widths) and any registered one-knob policy")
    p.add_argument("--targets", type=T.keep_fraction, nargs="+", default=[0.5, 0.3], help="latency fractions of dense")
    p.add_argument("--criterion", default="l1")
    p.add_argument("--train-subset", type=T.positive_int, default=20000, help="training images used (of 55,000)")
    p.add_argument("--val-size", type=T.positive_int, default=5000)
    p.add_argument("--test-subset", type=T.positive_int, default=None, help="test images scored (default: all 10,000)")
    p.add_argument("--batch-size", type=T.positive_int, default=128)
    p.add_argument("--epochs", type=T.nonneg_int, default=3, help="base training epochs (short: a benchmark budget)")
    p.add_argument("--lr", type=T.positive_float, default=0.1)
    p.add_argument("--finetune-epochs", type=T.nonneg_int, default=1)
    p.add_argument("--finetune-lr", type=T.positive_float, default=0.01)
    p.add_argument("--max-steps-per-epoch", type=T.positive_int, default=None, help="cap for smoke runs")
    p.add_argument("--evaluations", type=T.positive_int, default=40, help="candidates the auto search scores")
    p.add_argument("--latency-batch", type=T.positive_int, default=64)
    p.add_argument("--threads", type=T.positive_int, default=1, help="torch threads for everything (timing included)")
    p.add_argument("--holdout", type=T.nonneg_int, default=8, help="held-back real models scoring the latency model")
    p.add_argument("--reuse-latency", action="store_true", help="load the latency tables from the user cache")
    p.add_argument("--base", default=None, help="trained base to start from: a prunekit model file or run folder, "
                                                "or a state dict .pt sealed by prunekit (the bench cache's model.pt)")
    p.add_argument("--seed", type=T.nonneg_int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (digits-sized budget, minutes)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")


def add_bench_auto_parser(sub) -> argparse.ArgumentParser:
    """Add `auto` to a `prunekit bench` subparsers object."""
    p = sub.add_parser("auto", help="auto vs uniform / srr / global at equal measured latency")
    add_arguments(p)
    return p


def _machine() -> dict[str, Any]:

    cpu = cpu_name() or platform.processor() or platform.machine()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "load_average_at_start": load}


def _command() -> str:
    prog = Path(sys.argv[0]).name if sys.argv else "prunekit"
    prog = "prunekit" if prog == "prunekit" else f"python {sys.argv[0]}"
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def _loaders(args) -> RunData:
    """The run's data: a seeded training subset, a validation split (the auto search scores on it) and the
    test set, as the workflow takes it."""
    kw = dict(data_dir=args.data_dir, val_size=args.val_size, seed=args.seed)
    train = get_dataset(args.dataset, split="train", subset=args.train_subset, **kw)
    val = get_dataset(args.dataset, split="val", **kw)
    test = get_dataset(args.dataset, split="test", subset=args.test_subset, **kw)
    loaders = Loaders(make_loader(train, args.batch_size, shuffle=True, seed=args.seed), make_loader(val, 256),
                      make_loader(test, 256))
    return RunData(dataset_info(args.dataset, args.data_dir), loaders, data_read(args.dataset, args.data_dir))


def _base(args, train, log):
    """The trained base: --base (read through prunekit's verified loaders), else the workflow's base step
    (cached in the bench cache)."""
    kw = {"in_channels": 1, "num_classes": 10}
    if args.base:
        base = Path(args.base)
        if base.suffix == ".pt" and not (base.parent / MODEL_FILE).exists():  # a sealed state dict (bench cache)
            model = create(args.model, **kw)
            model.load_state_dict(read_checked(base))  # checksum verified, tensors only
        else:
            model = load_model(base)  # a prunekit model file, run folder or trainer checkpoint, verified
        return model.eval(), {"source": args.base, "train_s": 0.0}
    desc = {"dataset": args.dataset, "train_subset": args.train_subset, "val_size": args.val_size,
            "batch_size": args.batch_size, "bench": "auto"}
    model, info = train_base(args.model, kw, Loaders(train, None, train), desc, args.epochs, args.lr, args.seed,
                             cache_dir=cache_dir().parent / "bench-auto", max_steps=args.max_steps_per_epoch,
                             device="cpu", progress=False, log=log)
    info = {k: v for k, v in info.items() if k != "history"}
    return model.eval(), {**info, "threads": torch.get_num_threads()}


@dataclass
class _Bench:
    """What every row of the benchmark shares: the base, its graph and scores, the data, the latency model."""

    args: argparse.Namespace
    base: nn.Module
    graph: Any
    scores: Any
    example: torch.Tensor
    data: RunData
    lm: Any = None


def _workflow(b: _Bench, prune: PruneConfig) -> WorkflowConfig:
    """One row as a workflow run: `prune` on the shared base, the shared fine-tuning budget and seed."""
    a = b.args
    return WorkflowConfig(
        model=ModelConfig(a.model), data=DataConfig(a.dataset, data_dir=a.data_dir, val_size=a.val_size,
                                                    train_subset=a.train_subset, batch_size=a.batch_size),
        base=BaseConfig(epochs=a.epochs, lr=a.lr), prune=prune,
        recover=RecoverConfig(finetune_epochs=a.finetune_epochs, lr=a.finetune_lr), seed=a.seed, device="cpu",
        max_steps_per_epoch=a.max_steps_per_epoch, latency_runs=0, progress=False)


def _knob(b: _Bench, method: str, keep: float, log) -> tuple[float, dict[str, int], float]:
    """(ratio, channels removed per group, latency measured at the search) of the one-knob policy `method` put
    at `keep` of the dense latency: its ratio bisected on the latency model's prediction, then corrected by
    measurement (auto_search.meet_latency)."""
    policy = get_policy(method)
    knob_of: dict[tuple, float] = {}

    def make(r: float) -> dict[str, int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts = policy(b.base, b.graph, b.scores, ratio=r)
        knob_of[tuple(sorted(counts.items()))] = r  # the policy is deterministic: any ratio giving counts will do
        return counts

    counts, measured = meet_latency(b.lm, lambda s: knob_counts(b.lm, make, keep * s), keep, say=log)
    return knob_of[tuple(sorted(counts.items()))], counts, measured


def _prune_config(b: _Bench, method: str, keep: float, log) -> tuple[PruneConfig, dict[str, Any]]:
    """The row's PruneConfig (oneshot with the l1 criterion and the row's policy) and what the search found:
    auto searches inside the planning path toward Target(latency=keep) with the shared latency model; a
    one-knob policy gets the ratio `_knob` found."""
    a, options = b.args, {"train_config": TrainConfig(progress=False, verbose=False)}
    if method in AUTO_METHODS:
        report: dict[str, Any] = {}
        options["policy_kwargs"] = {"val_data": b.data.loaders.val, "evaluations": a.evaluations,
                                    "latency_model": b.lm, "report": report, "hw_widths": method != "auto-nohw",
                                    "log_fn": log}
        # strict=False: a measured latency over the target (beyond the 3% tolerance) is reported, not refused
        return PruneConfig(method="oneshot", criterion=a.criterion, policy="auto", target={"latency": keep},
                           strict=False, options=options), {"auto": report}
    t0 = time.perf_counter()
    ratio, counts, measured = _knob(b, method, keep, log)
    return (PruneConfig(method="oneshot", criterion=a.criterion, policy=method, ratio=ratio, options=options),
            {"ratio": ratio, "counts": counts, "measured": measured, "knob_s": time.perf_counter() - t0})


def _row(b: _Bench, method: str, keep: float, log) -> tuple[dict[str, Any], nn.Module]:
    """Prune the base with `method` to `keep` of the dense latency, fine-tune, evaluate (one `run_workflow`):
    one results row and the pruned model."""
    log(f"--- {method} at {keep:.2f} of dense latency")
    prune, found = _prune_config(b, method, keep, log)
    res = run_workflow(_workflow(b, prune), data=b.data, base_model=copy.deepcopy(b.base), log=log)
    counts = {d.name: len(d.removed) for d in res.plan.decisions if len(d.removed)}
    rep = found.get("auto") or {}
    measured = rep.get("latency_measured_ratio") if "auto" in found else found["measured"]
    if "counts" in found and found["counts"] != counts:  # the plan's check excluded a group the search cut
        log(f"{method} @ {keep}: the checked plan differs from the searched widths; its latency is measured below")
    before_ft = evaluate(pk.apply(copy.deepcopy(b.base), res.plan), b.data.loaders.test, "cpu")
    t = res.method.timings
    log(f"{method} @ {keep}: top-1 {100 * res.after['top1']:.2f}% (pruned {100 * before_ft['top1']:.2f}%), "
        f"MACs {res.after['macs'] / res.before['macs']:.3f}, latency {measured:.3f} of dense")
    row = {"target": keep, "method": method, "counts": counts, "ratio": found.get("ratio"),
           "plan_matches_search": None if "counts" not in found else found["counts"] == counts,
           "widths": {g.name: g.size - counts.get(g.name, 0) for g in b.graph.prunable_groups()},
           "predicted_ratio": b.lm.ratio(counts), "measured_ratio_at_search": measured,
           "top1_pruned": before_ft["top1"], "top1": res.after["top1"],
           "macs_kept": res.after["macs"] / res.before["macs"], "params_kept": res.after["params"] / res.before["params"],
           "search_s": found.get("knob_s", 0.0) + t.get("prune", 0.0), "finetune_s": t.get("finetune", 0.0),
           "plan": {k: res.plan.meta.get(k) for k in ("method", "policy", "criterion", "ratio", "target", "achieved",
                                                      "excluded")},
           "auto": {k: rep[k] for k in ("best_score", "final_score", "evaluations", "scoring", "time_s")
                    if k in rep} or None}
    return row, res.model.eval()


def _final_latency(b: _Bench, rows: list[dict[str, Any]], models: list[nn.Module]) -> tuple[float, float]:
    """Time every model together, round-robin; fills each row's latency fields. Returns (dense ms at the
    latency batch, dense ms at batch 1)."""
    final = b.lm.measure_many([{}] + [r["counts"] for r in rows], rounds=7)
    dense_b1 = measure_latency(b.base, b.example, threads=b.args.threads, warmup=10, runs=100).median_ms
    for r, ms, model in zip(rows, final[1:], models):
        r["latency_ms"] = ms
        r["latency_ratio"] = ms / final[0]
        r["prediction_error"] = (b.lm.ratio(r["counts"]) - r["latency_ratio"]) / r["latency_ratio"]
        r["latency_b1_ratio"] = measure_latency(model, b.example, threads=b.args.threads,
                                                warmup=10, runs=100).median_ms / dense_b1
    return final[0], dense_b1


def _results(b: _Bench, rows, sizes, base_info, dense_test, dense_ms, dense_b1, timings) -> dict[str, Any]:
    args, lm = b.args, b.lm
    finals = [abs(r["prediction_error"]) for r in rows]
    return {
        "command": _command(),
        "args": {k: v for k, v in vars(args).items() if k != "func" and not k.startswith("_")},
        "machine": _machine(), "prunekit": pk.__version__, "data": {"dataset": args.dataset, **sizes},
        "base": {**base_info, "epochs": args.epochs, "test_top1": dense_test["top1"]},
        "latency": {"batch": lm.batch, "threads": lm.threads, "device": lm.device_signature,
                    "clock": "thread CPU time (1 thread)" if lm.threads == 1 else "wall",
                    "statistic": "fastest of round-robin runs", "dense_ms": dense_ms, "dense_b1_ms": dense_b1,
                    "fit": lm.coef, "holdout": lm.holdout,
                    "final_models": {"mean_abs_err": sum(finals) / max(1, len(finals)),
                                     "max_abs_err": max(finals, default=0.0)},
                    "table_timings": sum(len(v) for v in lm.table.values())},
        "rows": rows, "timings": timings,
    }


AUTO_METHODS = ("auto", "auto-nohw")


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before the base is trained, a method that is neither auto, auto-nohw nor a registered one-knob
    policy, a method named twice, and an unknown criterion."""
    get_criterion(args.criterion)  # an unknown name lists the registered ones
    knobs = [name for name in list_policies() if name != "auto"]
    for m in args.methods:
        if m not in AUTO_METHODS and m not in knobs:
            raise ValueError(f"--methods {m}: give {', '.join(AUTO_METHODS)} (searched widths, with and without "
                             f"hardware-friendly rounding) or a one-knob policy ({', '.join(knobs)})")
    twice = sorted({m for m in args.methods if args.methods.count(m) > 1})
    if twice:
        raise ValueError(f"--methods names {', '.join(twice)} more than once")


def cmd_bench_auto(args: argparse.Namespace) -> int:
    if args.quick:
        args.train_subset, args.epochs, args.max_steps_per_epoch = min(args.train_subset, 2000), 1, 10
        args.evaluations, args.holdout, args.val_size = min(args.evaluations, 6), min(args.holdout, 3), 1000
        args.test_subset = min(args.test_subset or 1000, 1000)
    check_args(args)
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    out = prepare_output_dir(Path(args.out), overwrite=args.overwrite)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    timings: dict[str, float] = {}
    try:
        data = _loaders(args)
        sizes = {k: len(getattr(data.loaders, k).dataset) for k in ("train", "val", "test")}
        t0 = time.perf_counter()
        base, base_info = _base(args, data.loaders.train, log)
        timings["base"] = time.perf_counter() - t0
        base.eval()
        example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
        dense_test = evaluate(base, data.loaders.test, "cpu")
        log(f"base: test top-1 {100 * dense_test['top1']:.2f}%")
        graph = pk.trace(base, example)
        b = _Bench(args, base, graph, get_criterion(args.criterion)(base, graph), example, data)
        t0 = time.perf_counter()
        b.lm = LatencyModel.build(base, example, graph=graph, batch=args.latency_batch, threads=args.threads,
                                  holdout=args.holdout, seed=args.seed, refresh=not args.reuse_latency, log=log)
        timings["latency_model"] = time.perf_counter() - t0
        entries = sum(len(v) for v in b.lm.table.values())
        log(f"latency model: {len(b.lm.layers)} layers, {len(b.lm.table)} configurations, {entries} timings")
        done = [_row(b, method, keep, log) for keep in args.targets for method in args.methods]
        rows, models = [r for r, _ in done], [m for _, m in done]
        log("final latency: every model timed together, round-robin")
        t0 = time.perf_counter()
        dense_ms, dense_b1 = _final_latency(b, rows, models)
        timings["final_latency"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        result = _results(b, rows, sizes, base_info, dense_test, dense_ms, dense_b1, timings)
        atomic_write(out / "results.json", json.dumps(result, indent=1, default=str) + "\n", overwrite=True)
        atomic_write(out / "results.md", render_markdown(result), overwrite=True)
        log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
        print(render_markdown(result))
    finally:
        torch.set_num_threads(threads_before)
    return 0


def render_markdown(r: dict[str, Any]) -> str:
    lat, a = r["latency"], r["args"]
    lines = [
        "# auto vs one-knob policies at equal measured latency",
        "",
        f"`{r['command']}`",
        "",
        f"- Model: {a['model']} on {r['data']['dataset']} ({r['data']['train']:,} training images, "
        f"{r['data']['val']:,} validation, {r['data']['test']:,} test); base trained **{a['epochs']} epochs only** "
        f"(benchmark budget; {r['base'].get('train_s', 0):.0f} s on {r['base'].get('threads', '?')} thread(s)), "
        f"test top-1 {100 * r['base']['test_top1']:.2f}%.",
        f"- Every method: same base, l1 channel choice within groups, then {a['finetune_epochs']} fine-tuning "
        f"epoch(s) at lr {a['finetune_lr']}, seed {a['seed']}. auto scores {a['evaluations']} candidates by "
        "validation top-1 after BatchNorm recalibration (1,024 images), then re-scores its 4 best and the "
        "uniform-like start after 40 SGD steps each (2,048 images); auto-nohw is the same without "
        "hardware-friendly widths.",
        f"- Latency: batch {lat['batch']}, {lat['threads']} thread(s), {lat['clock']}, {lat['statistic']}; dense "
        f"{lat['dense_ms']:.2f} ms (batch 1: {lat['dense_b1_ms']:.3f} ms, wall median). One-knob policies are "
        "bisected on the latency model; every method is then measured and its predicted goal corrected, tighter "
        "while over the target by more than 3%, looser while under it by more than 6% (at most 3 times).",
        f"- Machine: {r['machine']['cpu']} ({r['machine']['cpus']} CPUs, load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['machine']['load_average_at_start'] or [])}), {r['machine']['platform']}, "
        f"Python {r['machine']['python']}, torch {r['machine']['torch']}, prunekit {r['prunekit']}.",
        "",
        "| target | method | top-1 (%) | delta vs dense | top-1 before fine-tune | latency (of dense) | speedup "
        "| batch-1 latency | MACs kept | params kept |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['target']:.2f} | {row['method']} | {100 * row['top1']:.2f} | "
            f"{100 * (row['top1'] - r['base']['test_top1']):+.2f} | {100 * row['top1_pruned']:.2f} | "
            f"{row['latency_ratio']:.3f} | {1 / row['latency_ratio']:.2f}x | {row['latency_b1_ratio']:.3f} | "
            f"{row['macs_kept']:.3f} | {row['params_kept']:.3f} |")
    best = {}
    for row in r["rows"]:
        if row["top1"] > best.get(row["target"], (None, -1.0))[1]:
            best[row["target"]] = (row["method"], row["top1"])
    lines += ["", "Best top-1 per target: " + "; ".join(f"{t:.2f}: {m} ({100 * v:.2f}%)" for t, (m, v) in best.items())
              + ". One seed and one fine-tuning epoch: differences under about a point are within run-to-run "
              "noise (the one-knob policies' knobs land on slightly different widths when the timings move). "
              "Latencies are not exactly equal: a one-knob policy can only stop at the widths its knob reaches, "
              "and on this CPU time moves in steps of 16 channels; each was within 3% of its target (or under it) when "
              "measured during the search, and the final timing, all models together, moves a few percent more."]
    h = lat["holdout"]
    lines += [
        "",
        "## Latency model",
        "",
        f"Per-layer width tables ({lat['table_timings']} timings), fit {lat['fit'][0]:.3f} ms + "
        f"{lat['fit'][1]:.3f} x tables. Prediction error on {len(h.get('candidates', []))} held-back random "
        f"real models: mean {100 * h.get('mean_abs_err', 0):.1f}%, max {100 * h.get('max_abs_err', 0):.1f}%; "
        f"on the {len(r['rows'])} benchmark models above (final timing, as fractions of the dense latency timed "
        "with them, since the machine's speed drifts between timings): mean "
        f"{100 * lat['final_models']['mean_abs_err']:.1f}%, max {100 * lat['final_models']['max_abs_err']:.1f}%.",
        "",
        "| held-back model | predicted ms | measured ms | error |",
        "|---|---|---|---|",
    ]
    for i, c in enumerate(h.get("candidates", [])):
        lines.append(f"| {i} | {c['predicted_ms']:.2f} | {c['measured_ms']:.2f} | {100 * c['rel_err']:+.1f}% |")
    lines += ["", "## Widths chosen", "", "| target | method | " + " | ".join(r["rows"][0]["widths"]) + " |",
              "|---|---|" + "---|" * len(r["rows"][0]["widths"])] if r["rows"] else []
    for row in r["rows"]:
        lines.append(f"| {row['target']:.2f} | {row['method']} | " + " | ".join(str(w) for w in row["widths"].values())
                     + " |")
    t = r["timings"]
    lines += ["", "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + ".", ""]
    return "\n".join(lines)
