"""PNG plots with matplotlib's Agg canvas (no pyplot, no display, the global backend is left alone).

Result rows for the comparison plots are dicts: a label under "name" (or "method"), "top1" (fraction),
"macs", and for speed "speedup" (dense latency / pruned latency) plus either "mac_ratio"
(dense MACs / pruned MACs) or "macs" with "base_macs"; an optional "batch" separates batch sizes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .schema import METRIC_KEYS


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    return path


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("name") or row.get("method") or "?")


def plot_before_after(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Bars of each metric after pruning as a percentage of its value before (before = 100%)."""
    before = report["metrics"]["before"]
    after = report["metrics"].get("after") or {}
    keys = [k for k in METRIC_KEYS if before.get(k) and after.get(k) is not None]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    values = [100.0 * float(after[k]) / float(before[k]) for k in keys]
    bars = ax.bar(keys, values, color=["#4c72b0" if k == "top1" else "#dd8452" for k in keys])
    ax.axhline(100.0, color="gray", linestyle="--", linewidth=1)
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.1f}%", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("after / before (%)")
    ax.set_title(f"{report.get('model', {}).get('name', 'model')}: after vs before")
    return _save(fig, path)


def plot_layer_widths(base_widths: Mapping[str, int], pruned_widths_by_method: Mapping[str, Mapping[str, int]],
                      path: str | os.PathLike) -> Path:
    """Channels per layer: the dense model as grey bars, each pruned model as a line."""
    layers = list(base_widths)
    fig = Figure(figsize=(max(6.0, 0.35 * len(layers) + 2), 4.5))
    ax = fig.subplots()
    xs = list(range(len(layers)))
    ax.bar(xs, [base_widths[k] for k in layers], color="#cccccc", label="dense")
    for method, widths in pruned_widths_by_method.items():
        ax.plot(xs, [widths.get(k, float("nan")) for k in layers], marker="o", markersize=3, label=method)
    ax.set_xticks(xs)
    ax.set_xticklabels(layers, rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title("layer widths")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_vs_macs(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Top-1 accuracy against MACs, one series per label (points of a sweep joined in MAC order)."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    series: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        if r.get("macs") is not None and r.get("top1") is not None:
            series.setdefault(_label(r), []).append((float(r["macs"]) / 1e6, 100.0 * float(r["top1"])))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("accuracy vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def mac_ratio(row: Mapping[str, Any]) -> float | None:
    """Theoretical speedup of a result row: dense MACs / pruned MACs."""
    if row.get("mac_ratio") is not None:
        return float(row["mac_ratio"])
    if row.get("macs") and row.get("base_macs"):
        return float(row["base_macs"]) / float(row["macs"])
    return None


def plot_speedup_vs_mac_ratio(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Measured speedup against the MAC ratio, with the ideal y = x line."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    pts: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        x = mac_ratio(r)
        if x is not None and r.get("speedup") is not None:
            key = _label(r) + (f" (batch {r['batch']})" if r.get("batch") is not None else "")
            pts.setdefault(key, []).append((x, float(r["speedup"])))
    top = max([1.0] + [max(x, y) for p in pts.values() for x, y in p])
    ax.plot([1.0, top], [1.0, top], color="gray", linestyle="--", linewidth=1, label="ideal")
    for name, p in pts.items():
        p.sort()
        ax.plot([a for a, _ in p], [b for _, b in p], marker="o", label=name)
    ax.set_xlabel("MAC ratio (dense / pruned)")
    ax.set_ylabel("measured speedup")
    ax.set_title("speedup vs MAC ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_training_curve(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Loss (left) and top-1 (right) per epoch from ``Trainer.history`` rows."""
    fig = Figure(figsize=(9, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    for key, ax, scale in (("train_loss", ax_loss, 1), ("val_loss", ax_loss, 1), ("train_top1", ax_acc, 100),
                           ("val_top1", ax_acc, 100)):
        pts = [(e, scale * float(r[key])) for e, r in zip(epochs, history) if r.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_compression_stages(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                            goal_ratio: float | None = None) -> Path:
    """Deep Compression: the compression ratio (log scale) and top-1 after each stage, one line per row.

    Args:
        rows: {"model": label, "stages": [{"stage", "ratio", "accuracy"}, ...]} per model.
        path: the PNG to write.
        goal_ratio: a dashed reference line on the ratio panel (e.g. the paper's 40x).
    """
    fig = Figure(figsize=(9, 4))
    ax_r, ax_a = fig.subplots(1, 2)
    for r in rows:
        names = [s.get("stage") for s in r["stages"]]
        label = str(r.get("model") or r.get("name") or "?")
        ax_r.plot(names, [s.get("ratio") or 1.0 for s in r["stages"]], marker="o", label=label)
        ax_a.plot(names, [100 * (s.get("accuracy") or 0) for s in r["stages"]], marker="o", label=label)
    ax_r.set_yscale("log")
    if goal_ratio:
        ax_r.axhline(goal_ratio, color="gray", linestyle="--", linewidth=1, label=f"{goal_ratio:g}x")
    ax_r.set_ylabel("compression ratio (x)")
    ax_a.set_ylabel("top-1 (%)")
    for ax in (ax_r, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_r.set_title("size")
    ax_a.set_title("accuracy")
    return _save(fig, path)
