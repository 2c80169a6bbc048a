"""Per channel group of a model: its width, the share of MACs and parameters that scale with its channels, and
its SRR structural redundancy (a table for `prunekit analyze` and the demo, and a bar chart)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..graph.cost import predict
from ..probing import trace
from ..policies.srr import srr_redundancy


def analyze_model(model, example, gamma: float | None = None, quantile: float = 0.05) -> list[dict[str, Any]]:
    """One row per channel group: name, width, prunable, macs_share, params, params_share, redundancy."""
    graph = trace(model, example)
    base = predict(graph, {})
    red = srr_redundancy(model, graph, gamma=gamma, quantile=quantile)
    rows = []
    for g in graph.groups:
        one = predict(graph, {g.name: 1})  # what one channel of the group costs, times the width
        macs = (base["macs"] - one["macs"]) * g.size
        params = (base["params"] - one["params"]) * g.size
        rows.append({"group": g.name, "width": g.size, "prunable": g.prunable,
                     "macs_share": macs / max(1.0, base["macs"]), "params": int(round(params)),
                     "params_share": params / max(1.0, base["params"]), "redundancy": red.get(g.name),
                     "reason": "" if g.prunable else g.reason})
    return rows


def plot_analysis(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Bars of SRR redundancy (top) and width and MACs share (bottom) per group."""
    from matplotlib.figure import Figure
    names = [r["group"] for r in rows]
    xs = list(range(len(rows)))
    fig = Figure(figsize=(max(6.0, 0.45 * len(rows) + 2), 6.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(xs, [r["redundancy"] or 0.0 for r in rows], color="#4c72b0")
    ax1.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax1.set_ylabel("SRR redundancy R")
    ax1.set_title("structural redundancy per channel group")
    ax2.bar(xs, [r["width"] for r in rows], color="#cccccc", label="width (channels)")
    ax2.set_ylabel("channels")
    ax3 = ax2.twinx()
    ax3.plot(xs, [100 * r["macs_share"] for r in rows], color="#dd8452", marker="o", label="MACs share (%)")
    ax3.set_ylabel("MACs share (%)")
    ax2.set_xticks(xs)
    ax2.set_xticklabels(names, rotation=90, fontsize=7)
    fig.legend(loc="upper right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    return path
