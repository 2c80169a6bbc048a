"""Suite `compression`: the Deep Compression results (Han et al. 2016: prune, retrain, share weights, Huffman
code) of benchmarks/deep_compression.py, gathered here next to the paper's numbers. When that script's
results.json is missing, its quick variant is run first (into this suite's folder)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from . import common, output
from .config import BenchConfig
from .quantize import int8_size_section

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"archs": [], "seeds": [0], "targets": []},
    "quick": {"archs": [], "targets": []},
    "opts": {"source": "benchmarks/results/deep_compression", "script": "benchmarks/deep_compression.py"},
}
PAPER = {"lenet300": {"ratio": 40.0, "drop": 0.0, "note": "LeNet-300-100, MNIST: 40x, no loss"},
         "lenet5": {"ratio": 39.0, "drop": 0.0, "note": "LeNet-5, MNIST: 39x, no loss"}}

COLUMNS: list[output.Column] = [
    ("model", lambda r: r["model"]),
    ("dense top-1", lambda r: output.pct(r["dense_top1"], 2)),
    ("pruned (kept weights)", lambda r: output.pct(r.get("density"))),
    ("pruned+retrained top-1", lambda r: output.pct(r.get("pruned_top1"), 2)),
    ("quantized top-1", lambda r: output.pct(r.get("quantized_top1"), 2)),
    ("Huffman top-1", lambda r: output.pct(r["final_top1"], 2)),
    ("Δ top-1 dense -> Huffman (pts)", lambda r: output.num(None if r["drop"] is None else -r["drop"], "+.2f")),
    ("dense bytes", lambda r: f"{r['dense_bytes']:,}" if r.get("dense_bytes") else "-"),
    ("file bytes", lambda r: f"{r['final_bytes']:,}" if r.get("final_bytes") else "-"),
    ("ratio", lambda r: output.num(r["ratio"], ".1f", "x")),
    ("paper", lambda r: PAPER.get(r["model"], {}).get("note", "-")),
    ("goal (>= 40x, <= 0.5 pts)", lambda r: "met" if r.get("goal_met") else "not met"),
]


def _stage(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next((s for s in run.get("stages", []) if s.get("stage") == name), {})


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    dense, final = _stage(run, "dense"), _stage(run, "huffman") or (run.get("stages") or [{}])[-1]
    layers = run.get("layers") or []
    numel = sum(layer.get("numel", 0) for layer in layers)
    density = sum(layer.get("numel", 0) * layer.get("density", 0) for layer in layers) / numel if numel else None
    drop = run.get("accuracy_drop_points")
    if drop is None and dense.get("accuracy") is not None and final.get("accuracy") is not None:
        drop = 100 * (dense["accuracy"] - final["accuracy"])
    return {"model": run.get("model"), "dense_top1": dense.get("accuracy"), "dense_bytes": dense.get("bytes"),
            "density": density, "pruned_top1": _stage(run, "pruned").get("accuracy"),
            "quantized_top1": _stage(run, "quantized").get("accuracy"), "final_top1": final.get("accuracy"),
            "final_bytes": final.get("bytes"), "drop": drop, "ratio": run.get("ratio", final.get("ratio")),
            "goal_met": run.get("goal_met"), "stages": run.get("stages", []), "exact_reload": run.get("exact_reload")}


def run(cfg: BenchConfig) -> dict[str, Any]:
    started = time.time()
    out = Path(cfg.out or "benchmarks/results/compression")
    source = Path(cfg.opts["source"])
    ran = None
    if not (source / "results.json").is_file():
        script = Path(cfg.opts["script"])
        if not script.is_file():
            raise FileNotFoundError(f"compression: no {source}/results.json and no {script} to make it "
                                    "(run from the repository root)")
        source = out / "deep_compression_quick"
        cmd = [sys.executable, str(script), "--quick", "--out", str(source)]
        common.log(f"compression: {cfg.opts['source']}/results.json missing; running {' '.join(cmd)}")
        subprocess.run(cmd, check=True)
        ran = " ".join(cmd)
    src = json.loads((source / "results.json").read_text())
    table = [summarise(r) for r in src.get("runs", [])]
    if not table:
        raise ValueError(f"{source}/results.json holds no runs")
    plots = [plot_stages(table, out / "compression_stages.png").name]
    notes = [f"Source: `{source}/results.json` ({'quick smoke run' if src.get('quick') else 'full run'}), made by "
             f"`{src.get('command', '?')}` on {src.get('date', '?')}."]
    if ran:
        notes.append(f"The full results were missing, so this suite ran `{ran}` itself: numbers from a tiny subset "
                     "with one epoch per phase, not comparable to the paper.")
    for r in table:
        p = PAPER.get(r["model"])
        if p and r.get("ratio"):
            notes.append(f"{r['model']}: {r['ratio']:.1f}x smaller ({100 * (r['final_top1'] or 0):.2f}% top-1, "
                         f"{-r['drop']:+.2f} pts) against the paper's {p['ratio']:.0f}x with no loss on MNIST.")
    intro = ("Deep Compression (prune -> retrain -> k-means weight sharing -> Huffman coding) on Fashion-MNIST, "
             "gathered from benchmarks/deep_compression.py. Ratio = dense float32 bytes / compressed file bytes; "
             "top-1 on the test set (10,000 images). Per-stage sizes, per-layer settings and the training budget: the "
             "source results.md. This suite trains nothing: the Budget section below does not apply to it.")
    machine = src.get("machine") or {}
    info = {"source": str(source), "source_command": src.get("command"), "source_machine": machine,
            "source_date": src.get("date")}
    runs = [{**r, "source": str(source)} for r in table]
    flat = [{k: v for k, v in r.items() if k != "stages"} for r in table]
    stages = "\n".join(f"- {r['model']}: " + ", ".join(
        f"{s.get('stage')} {s.get('bytes', 0):,} B ({s.get('ratio', 0):.1f}x, {100 * (s.get('accuracy') or 0):.2f}%)"
        for s in r["stages"]) for r in table)
    int8 = int8_size_section()  # pruned + int8 sizes (the quantize suite), stated next to these
    sections = [("Stages", stages)] + ([("Pruned + int8 (quantize suite)", int8)] if int8 else [])
    return output.write_suite(out, cfg, "Deep Compression (gathered)", intro, flat, COLUMNS, runs, plots, notes,
                              extra_sections=sections, info=info, started=started)


def plot_stages(table: list[dict[str, Any]], path: Path) -> Path:
    """Compression ratio (log scale) and top-1 after each stage, one line per model."""
    fig = Figure(figsize=(9, 4))
    ax_r, ax_a = fig.subplots(1, 2)
    for r in table:
        names = [s.get("stage") for s in r["stages"]]
        ax_r.plot(names, [s.get("ratio") or 1.0 for s in r["stages"]], marker="o", label=r["model"])
        ax_a.plot(names, [100 * (s.get("accuracy") or 0) for s in r["stages"]], marker="o", label=r["model"])
    ax_r.set_yscale("log")
    ax_r.axhline(40, color="gray", linestyle="--", linewidth=1, label="paper (LeNet-300-100)")
    ax_r.set_ylabel("compression ratio (x)")
    ax_a.set_ylabel("top-1 (%)")
    for ax in (ax_r, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_r.set_title("size")
    ax_a.set_title("accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path
