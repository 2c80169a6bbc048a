"""The plots every training suite writes: accuracy vs MACs (a line per method, per arch), layer widths (base
vs each method, per arch and target, first seed), measured speedup vs MAC ratio (a line per arch)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from ..report import plot_accuracy_vs_macs, plot_layer_widths, plot_speedup_vs_mac_ratio
from .config import BenchConfig


def standard_plots(out: Path, cfg: BenchConfig, runs: list[dict[str, Any]], table: list[dict[str, Any]],
                   bases: dict[str, dict[str, Any]]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for arch, b in bases.items():
        rows = [{"name": "dense", "macs": b["macs"], "top1": b["top1"]}]
        rows += [{"name": r["method"], "macs": r["macs_kept"] * b["macs"], "top1": r["top1"]}
                 for r in table if r["arch"] == arch]
        plots.append(plot_accuracy_vs_macs(rows, out / f"accuracy_vs_macs_{arch}.png").name)
        for target in cfg.targets:
            per = {r["method"]: r["widths"] for r in runs
                   if r["arch"] == arch and r["target"] == target and r["seed"] == cfg.seeds[0] and r.get("widths")}
            if per:
                path = out / f"layer_widths_{arch}_{int(round(100 * target))}.png"
                plots.append(plot_layer_widths(b["widths"], per, path).name)
    rows = [{"name": r["arch"], "mac_ratio": 1 / r["macs_kept"], "speedup": r["speedup"],
             "batch": max(cfg.latency_batches)} for r in table if r.get("speedup") and r.get("macs_kept")]
    if rows:
        plots.append(plot_speedup_vs_mac_ratio(rows, out / "speedup_vs_mac_ratio.png").name)
    return plots


def plot_time_split(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Stacked bars per row label: time spent ranking and the rest of the run (seconds)."""
    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
    ax = fig.subplots()
    labels = [r["label"] for r in rows]
    rank = [r["ranking_s"] or 0.0 for r in rows]
    rest = [max(0.0, (r["total_s"] or 0.0) - (r["ranking_s"] or 0.0)) for r in rows]
    xs = list(range(len(rows)))
    ax.bar(xs, rest, color="#4c72b0", label="training, pruning, other")
    ax.bar(xs, rank, bottom=rest, color="#dd8452", label="ranking")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("seconds (mean over seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path
