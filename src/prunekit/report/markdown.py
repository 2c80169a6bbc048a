"""Markdown: tables, number formatting, and report.md rendered from a report dict."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..quantize.compare import int8_table
from .schema import METRIC_KEYS, atomic_write_text, compare_metrics, complete_report, validate_report


def format_count(n: Any) -> str:
    """40813184 -> '40.81M', 61706 -> '61.71K', 512 -> '512'."""
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def format_bytes(n: Any) -> str:
    """1536 -> '1.50 KiB'."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def format_value(v: Any, floatfmt: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, floatfmt)
    return str(v)


def _cell(v: Any, floatfmt: str) -> str:
    return format_value(v, floatfmt).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Any], columns: Sequence[str], headers: Sequence[str] | None = None,
                   floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table. ``rows`` are dicts (looked up by column) or sequences (in order)."""
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError("headers and columns differ in length")
    lines = ["| " + " | ".join(_cell(h, floatfmt) for h in headers) + " |",
             "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, dict) else list(row)
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in values) + " |")
    return "\n".join(lines) + "\n"


def _metric_text(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("top1", "top5"):
        return f"{100 * float(v):.2f}%"
    if key in ("params", "macs", "nonzero_params"):
        return format_count(v)
    if key == "size_bytes":
        return format_bytes(v)
    if key == "latency_ms":
        return f"{float(v):.3f} ms"
    return format_value(v)


def metrics_rows(before: dict[str, Any], after: dict[str, Any] | None) -> list[list[str]]:
    """Rows [metric, before, after, change] for the Metrics keys present."""
    extra = ("top5", "nonzero_params", "perplexity", "mean_cosine", "spearman")  # text models: quality of the result
    keys = [k for k in (*METRIC_KEYS, *extra) if k in before or (after and k in after)]
    summary = compare_metrics(before, after) if after else {}
    change = {"top1": summary.get("top1_delta"), "params": summary.get("params_kept"),
              "macs": summary.get("macs_kept"), "size_bytes": summary.get("size_kept"),
              "latency_ms": summary.get("speedup")}
    rows = []
    for k in keys:
        c = change.get(k)
        if c is None:
            text = ""
        elif k == "top1":
            text = f"{100 * c:+.2f} pts"
        elif k == "latency_ms":
            text = f"{c:.2f}x faster"
        else:
            text = f"{100 * c:.1f}% kept"
        rows.append([k, _metric_text(k, before.get(k)), _metric_text(k, (after or {}).get(k)), text])
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: what was run, the before/after table, timings, environment and the plots in the folder."""
    model, data = report.get("model", {}), report.get("data", {})
    title = f"# prunekit report: {model.get('name', 'model')}"
    if data.get("dataset"):
        title += f" on {data['dataset']}"
    out = [title, ""]
    if report.get("command"):
        out += ["```", str(report["command"]), "```", ""]
    if report.get("method"):
        method = report["method"]
        out += ["## Method", "", markdown_table([[k, method[k]] for k in method], ["key", "value"])]
    metrics = report.get("metrics", {})
    if metrics.get("before"):
        out += ["## Metrics", "", markdown_table(metrics_rows(metrics["before"], metrics.get("after")),
                                                 ["metric", "before", "after", "change"])]
    target = (report.get("extra") or {}).get("target") or {}
    if target.get("asked"):  # the fractions asked for and those the plan keeps: a missed target is stated
        asked = ", ".join(f"{k} {v:g}" for k, v in target["asked"].items())
        planned = ", ".join(f"{k} {float(v):.4f}" for k, v in (target.get("planned") or {}).items())
        verdict = "met" if target.get("met") else ("**not met** (accepted with --best-effort / strict=False: the "
                                                   "most pruned plan the guards allow)")
        out += [f"Target (fractions of the dense model kept): {asked}; the plan keeps {planned}: {verdict}.", ""]
    if metrics.get("int8"):  # the int8 row: top-1, bytes, torch and onnxruntime latency at batch 1 and 64
        out += ["## int8", "", *int8_table(metrics), ""]
    stages = ((report.get("extra") or {}).get("deep_compression") or {}).get("stages") or []
    if stages:  # Deep Compression: bytes, ratio and accuracy after each stage
        rows = [[s.get("stage"), format_bytes(s.get("bytes")), f"{s.get('ratio') or 0:.1f}x",
                 _metric_text("top1", s.get("accuracy"))] for s in stages]
        out += ["## Deep Compression stages", "", markdown_table(rows, ["stage", "bytes", "ratio", "top-1"])]
    timings = report.get("timings") or {}
    if timings:
        rows = [[k, f"{float(v):.2f}"] for k, v in timings.items()]
        out += ["## Timings", "", markdown_table(rows, ["phase", "seconds"])]
    env = {**(report.get("versions") or {}), **(report.get("machine") or {})}
    if env:
        out += ["## Environment", "", markdown_table([[k, v] for k, v in env.items()], ["item", "value"])]
    history = report.get("history") or []
    if history:
        cols = [c for c in ("epoch", "train_loss", "train_top1", "val_top1", "val_loss", "lr", "time_s")
                if any(c in r for r in history)]
        out += ["## Training", "", markdown_table(history, cols)]
    for name in report.get("plots") or []:
        out += [f"![{name}]({name})", ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(out_dir: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Validate ``report``, fill in the automatic fields, write report.json and report.md atomically.

    Returns the path of report.json. Raises ``ValueError`` listing every schema problem.
    """
    problems = validate_report(report)
    if problems:
        raise ValueError("report does not match the schema: " + "; ".join(problems))
    out_dir = Path(out_dir)
    full = complete_report(report)
    if "plots" not in full:
        pngs = sorted(p.name for p in out_dir.glob("*.png")) if out_dir.is_dir() else []
        if pngs:
            full["plots"] = pngs
    path = atomic_write_text(out_dir / "report.json", json.dumps(full, indent=2, sort_keys=False) + "\n")
    atomic_write_text(out_dir / "report.md", render_markdown(full))
    return path
