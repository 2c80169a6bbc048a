"""`prunekit analyze`: per channel group, its width, the share of MACs and parameters that scale with its
channels, and its SRR structural redundancy; a rich table, analysis.json and a bar chart (analyze.png).
Top-level imports stay light (the module is imported whenever the parser is built)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_model_args
    add_model_args(p)
    p.add_argument("--dataset", default="fashion-mnist", help="sets classes, channels and image size")
    p.add_argument("--data-dir", default=None, help="only needed for imagefolder")
    p.add_argument("--checkpoint", default=None, help="trained model (saved model, run folder or .pt)")
    p.add_argument("--gamma", type=float, default=None,
                   help="SRR edge threshold on distance/sqrt(length) (default: a quantile of all distances)")
    p.add_argument("--quantile", type=float, default=0.05, help="SRR scale-free threshold: quantile of distances")
    p.add_argument("--out", default="runs/analyze", help="folder for analysis.json and analyze.png")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def analyze_model(model, example, gamma: float | None = None, quantile: float = 0.05) -> list[dict[str, Any]]:
    """One row per channel group: name, width, prunable, macs_share, params, params_share, redundancy."""
    from ..graph.cost import predict
    from ..graph.trace import trace
    from ..policies.srr import srr_redundancy

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


def print_analysis(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c, j in (("group", "left"), ("width", "right"), ("MACs share", "right"), ("params", "right"),
                 ("SRR redundancy", "right")):
        t.add_column(c, justify=j)
    for r in rows:
        red = "fixed" if r["redundancy"] is None else f"{r['redundancy']:.2f}"
        t.add_row(r["group"], str(r["width"]), f"{100 * r['macs_share']:.1f}%", f"{r['params']:,}", red)
    Console().print(t)
    print("MACs share: MACs that scale with the group's channels (its producers and consumers), so shares "
          "overlap; redundancy R = N / (0.65 covering + 0.35 components), 1 = no two filters alike.")


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


def build_model(args: argparse.Namespace):
    """(model, example input) from --checkpoint or --model, sized by the data set."""
    from ..data import dataset_info
    from ..models import create
    from .common import CliError, example_input, load_model_with_shape, model_kwargs
    info = dataset_info(args.dataset, args.data_dir, args.input_size)
    if args.checkpoint:
        model, shape = load_model_with_shape(args.checkpoint)
        if shape:
            return model, example_input(shape[0], tuple(shape[1:]))
    elif args.model:
        kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                          args.width, args.input_size or info.image_size[0])
        model = create(args.model, **kw)
    else:
        raise CliError("give --model NAME or --checkpoint PATH")
    return model, example_input(args.in_channels or info.in_channels, args.input_size or info.image_size)


def run(args: argparse.Namespace) -> int:
    model, example = build_model(args)
    rows = analyze_model(model.eval(), example, args.gamma, args.quantile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(rows, indent=2) + "\n")
    png = plot_analysis(rows, out / "analyze.png")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        name = args.checkpoint or args.model
        print_analysis(rows, f"{name}: {len(rows)} channel groups, input {tuple(example.shape)}")
        print(f"chart: {png}")
    return 0
