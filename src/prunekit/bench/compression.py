"""Suite `compression`: Deep Compression (Han et al. 2016: prune, retrain, share weights, Huffman code) on
LeNet-300-100 and LeNet-5, each row one `run_workflow` run with `PruneConfig(method="deep_compression")`: the
base trained and cached by the workflow, the compressed file (model.pkz) and report written to the row's folder
`<out>/<model>-s<seed>`, read back and checked bit for bit. Rows are resumable (`--resume`)."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..report import plot_compression_stages
from ..workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, RecoverConfig, WorkflowConfig,
                        run_workflow)
from . import common, output
from .config import BenchConfig, budget_not_read, opt_positive
from .quantize import int8_size_section
from .rows import SuiteRows

GOAL_RATIO, GOAL_DROP = 40.0, 0.5


@dataclass(frozen=True)
class ModelSetup:
    """Per model: sparsity per layer (fraction removed), weight-sharing bits, epochs per phase."""

    sparsity: dict[str, float]
    bits: dict[str, int]
    base_epochs: int
    retrain_epochs: int
    finetune_epochs: int
    notes: str = ""


SETUPS = {
    # Han et al. keep 8% / 9% / 26% of LeNet-300-100's three layers.
    "lenet300": ModelSetup({"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}, {"linear": 4}, base_epochs=15,
                           retrain_epochs=24, finetune_epochs=4,
                           notes="Han et al.'s per-layer rates (8% / 9% / 26% kept); fc weights shared in 4 bits"),
    # This LeNet-5 (6-16-120-84, 61.7k weights) is 7x smaller than the paper's Caffe LeNet-5 (431k), so biases,
    # codebooks and tables weigh more: the fc layers are pruned harder than the paper's 8% / 19% kept, and the
    # conv layers share 5 bits (an 8-bit codebook alone, 1 KB, outweighs conv2's 360 remaining weights).
    "lenet5": ModelSetup({"conv1": 0.40, "conv2": 0.85, "fc1": 0.955, "fc2": 0.93, "fc3": 0.80},
                         {"conv": 5, "linear": 4}, base_epochs=12, retrain_epochs=16, finetune_epochs=3,
                         notes="conv rates after Han et al. (66% / 12% kept), fc pruned harder for this small "
                               "LeNet-5; conv shared in 5 bits, fc in 4"),
}
PAPER = {"lenet300": {"ratio": 40.0, "note": "LeNet-300-100, MNIST: 40x, no loss"},
         "lenet5": {"ratio": 39.0, "note": "LeNet-5, MNIST: 39x, no loss"}}

PRESETS: dict[str, dict[str, Any]] = {
    # the whole data set; base, retraining and centroid epochs per model (SETUPS); three seeds (minutes each)
    "default": {"archs": [("lenet300", 1.0), ("lenet5", 1.0)], "seeds": [0, 1, 2], "targets": [], "train_samples": None,
                "test_samples": None, "base_lr": 0.05, "finetune_lr": 0.01, "finetune_steps": None},
    "quick": {"archs": [("lenet300", 1.0), ("lenet5", 1.0)], "targets": [], "base_lr": 0.05,
              "finetune_lr": 0.01},
    # schedule: AGP (sparsity reached gradually over the first half of retraining); centroid fine-tuning lr
    "opts": {"schedule": "agp", "centroid_lr": 0.002},
}

COLUMNS: list[output.Column] = [
    ("model", lambda r: r["model"]),
    ("seed", lambda r: r["seed"]),
    ("dense top-1", lambda r: output.pct(r["dense_top1"], 2)),
    ("pruned (kept weights)", lambda r: output.pct(r.get("density"))),
    ("pruned+retrained top-1", lambda r: output.pct(r.get("pruned_top1"), 2)),
    ("quantized top-1", lambda r: output.pct(r.get("quantized_top1"), 2)),
    ("Huffman top-1", lambda r: output.pct(r["final_top1"], 2)),
    ("Δ top-1 dense -> Huffman (pts)", lambda r: output.num(None if r["drop"] is None else -r["drop"], "+.2f")),
    ("dense bytes", lambda r: f"{r['dense_bytes']:,}"),
    ("file bytes", lambda r: f"{r['final_bytes']:,}"),
    ("ratio", lambda r: output.num(r["ratio"], ".1f", "x")),
    ("bit-exact reload", lambda r: "yes" if r.get("exact_reload") else "no"),
    ("paper", lambda r: PAPER.get(r["model"], {}).get("note", "-")),
    (f"goal (>= {GOAL_RATIO:.0f}x, <= {GOAL_DROP} pts)", lambda r: "met" if r.get("goal_met") else "not met"),
]
KEYS = ("model", "seed")
RESUMABLE = True
NO_FULL = ("the compression suite's default budget is the paper's already (the whole data set, every epoch of "
           "each model's setup); run it without --full")
_PER_MODEL = "set per model by the suite's setups (prunekit.bench.compression.SETUPS)"
NOT_READ = {"targets": "Deep Compression removes per-layer fractions of weights, not a MACs target; " + _PER_MODEL,
            "base_epochs": _PER_MODEL, "finetune_epochs": _PER_MODEL,
            "score_batches": "Deep Compression prunes by magnitude, which reads no batches",
            "latency_runs": "nothing is timed (zeroed weights do not speed up dense kernels)",
            "peer": "torch-pruning has no Deep Compression to compare with"}


def setup_for(cfg: BenchConfig, arch: str) -> ModelSetup:
    """The model's setup; the quick size runs one epoch per phase."""
    if arch not in SETUPS:
        raise ValueError(f"compression: no Deep Compression setup for {arch!r}; this suite runs "
                         f"{', '.join(SETUPS)}")
    s = SETUPS[arch]
    if cfg.quick:
        return ModelSetup(s.sparsity, s.bits, 1, 1, 1, s.notes + " (quick: one epoch per phase)")
    return s


def workflow_config(cfg: BenchConfig, arch: str, seed: int, out: Path) -> WorkflowConfig:
    """The run_workflow config of one row: the model's setup as Deep Compression options."""
    s = setup_for(cfg, arch)
    lr = opt_positive("compression", cfg.opts, "centroid_lr")  # the shared centroids' learning rate
    options = {"sparsity": dict(s.sparsity), "bits": dict(s.bits), "scope": "layer",
               "schedule": cfg.opts["schedule"], "finetune_epochs": s.finetune_epochs,
               "finetune_lr": lr}
    return WorkflowConfig(
        model=ModelConfig(arch),
        data=DataConfig(cfg.dataset, data_dir=cfg.data_dir, train_subset=cfg.train_samples,
                        test_subset=cfg.test_samples, batch_size=cfg.batch_size),
        base=BaseConfig(epochs=s.base_epochs, lr=cfg.base_lr, cache_dir=str(cfg.cache_dir or common.default_cache()),
                        max_steps_per_epoch=cfg.base_max_steps),  # --finetune-steps caps the later phases only
        prune=PruneConfig(method="deep_compression", options=options),
        recover=RecoverConfig(finetune_epochs=s.retrain_epochs, lr=cfg.finetune_lr),
        seed=seed, device="cpu", max_steps_per_epoch=cfg.finetune_steps, latency_runs=0, progress=False,
        out=str(out), overwrite=True)  # the row's own folder inside the suite folder (a rerun replaces it)


def summarise(report: dict[str, Any], arch: str, seed: int, setup: ModelSetup) -> dict[str, Any]:
    """One row of the table from a run's report.json."""
    dc = report["extra"]["deep_compression"]
    stages = {s["stage"]: s for s in dc["stages"]}
    dense, final = stages["dense"], stages["huffman"]
    numel = sum(layer["numel"] for layer in dc["layers"])
    density = sum(layer["nonzero"] for layer in dc["layers"]) / numel if numel else None
    drop = 100 * (dense["accuracy"] - final["accuracy"])
    return {"model": arch, "seed": seed, "dense_top1": dense["accuracy"], "dense_bytes": dense["bytes"],
            "density": density, "pruned_top1": stages["pruned"]["accuracy"],
            "quantized_top1": stages["quantized"]["accuracy"], "final_top1": final["accuracy"],
            "final_bytes": final["bytes"], "drop": drop, "ratio": final["ratio"],
            "goal_met": bool(final["ratio"] >= GOAL_RATIO and drop <= GOAL_DROP),
            "exact_reload": dc["exact_reload"], "stages": dc["stages"], "layers": dc["layers"],
            "notes": dc["notes"], "setup": asdict(setup), "base": report["extra"]["base"],
            "timings": report["timings"], "summary": report["summary"]}


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/compression")
    rows = SuiteRows(out, cfg, KEYS, resume=cfg.resume)
    n_all = len(cfg.archs) * len(cfg.seeds)
    for arch, _width in cfg.archs:
        for seed in cfg.seeds:
            if rows.done(model=arch, seed=seed) is not None:
                continue
            t0 = time.perf_counter()
            folder = out / f"{arch}-s{seed}"
            res = run_workflow(workflow_config(cfg, arch, seed, folder), log=common.log)
            row = summarise(res.report, arch, seed, setup_for(cfg, arch))
            row.update(folder=folder.name, wall_s=time.perf_counter() - t0)
            rows.add(row)
            common.log(f"[{len(rows.runs)}/{n_all}] {arch} seed {seed}: {row['ratio']:.1f}x, top-1 "
                       f"{100 * row['final_top1']:.2f}% ({-row['drop']:+.2f} pts, {row['wall_s']:.0f} s)")
            write(cfg, out, rows.runs, started)  # every finished row lands
    return write(cfg, out, rows.runs, started)


def _layers_table(row: dict[str, Any]) -> str:
    lines = ["| layer | weights | kept | bits | clusters | bytes in file |", "|---|---:|---:|---:|---:|---:|"]
    for layer in row["layers"]:
        lines.append(f"| {layer['key']} | {layer['numel']:,} | {100 * layer['density']:.1f}% | {layer['bits']} | "
                     f"{layer['clusters']} | {layer['stored_bytes']:,} |")
    return "\n".join(lines)


def write(cfg: BenchConfig, out: Path, runs: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """results.json / runs.json / results.md / the stages plot from the rows finished so far."""
    order = [a for a, _ in cfg.archs]
    table = sorted(runs, key=lambda r: (order.index(r["model"]) if r["model"] in order else len(order), r["seed"]))
    plots = [plot_compression_stages([{"model": f"{r['model']} s{r['seed']}", "stages": r["stages"]}
                                      for r in table], out / "compression_stages.png", GOAL_RATIO).name] if table else []
    notes = []
    for arch in order:
        mine = [r for r in table if r["model"] == arch]
        if not mine:
            continue
        ratio, ratio_sd = common.mean_spread([r["ratio"] for r in mine])
        drop, drop_sd = common.mean_spread([r["drop"] for r in mine])
        met = ratio >= GOAL_RATIO and drop <= GOAL_DROP
        spread = (f" (sd {ratio_sd:.1f}x / {drop_sd:.2f} pts over {len(mine)} seeds)" if len(mine) > 1 else "")
        notes.append(f"{arch}: {ratio:.1f}x smaller at {-drop:+.2f} pts top-1 on average{spread}, against the "
                     f"paper's {PAPER[arch]['ratio']:.0f}x with no loss on MNIST; goal (>= {GOAL_RATIO:.0f}x, <= "
                     f"{GOAL_DROP} pts lost) {'met' if met else 'not met'} on the mean, met by "
                     f"{sum(r['goal_met'] for r in mine)} of {len(mine)} seeds.")
    intro = ("Deep Compression (prune -> retrain with masks -> k-means weight sharing -> centroid fine-tuning -> "
             "Huffman coding) on Fashion-MNIST, one `run_workflow` run per row "
             "(`PruneConfig(method=\"deep_compression\")`; run folder with model.pkz and report.json per row). "
             "Ratio = dense float32 bytes / compressed file bytes; top-1 on the test set. Sizes: dense = 4 bytes "
             "per float of the state dict; pruned = float32 values + relative indices; quantized = codebook + "
             "cluster-index bits + relative indices; huffman = the bytes of the file, which is read back and "
             "checked to reproduce the weight-shared model bit for bit. Base, retraining and centroid epochs per "
             "model are in the per-model sections.")
    flat = [{k: v for k, v in r.items() if k not in ("stages", "layers", "notes")} for r in table]
    sections = []
    for r in table:
        s = r["setup"]
        stages = ", ".join(f"{st['stage']} {st['bytes']:,} B ({st['ratio']:.1f}x, {100 * st['accuracy']:.2f}%)"
                           for st in r["stages"])
        sections.append((f"{r['model']} (seed {r['seed']}, folder {r['folder']})",
                         f"{s['notes']}. Epochs: base {s['base_epochs']}, retraining {s['retrain_epochs']}, "
                         f"centroid fine-tuning {s['finetune_epochs']}.\n\nStages: {stages}.\n\n" + _layers_table(r)))
    int8 = int8_size_section()  # pruned + int8 sizes (the quantize suite), stated next to these
    if int8:
        sections.append(("Pruned + int8 (quantize suite)", int8))
    return output.write_suite(out, cfg, "Deep Compression", intro, flat, COLUMNS, table, plots, notes,
                              extra_sections=sections, started=started, not_read=budget_not_read(sys.modules[__name__]))
