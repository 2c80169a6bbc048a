"""Markdown: tables, number formatting, and report.md rendered from a report dict."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..planning import TERM_UNITS
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


def _threads(n: Any) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _latency_entries(block: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A Metrics block's per-batch LatencyResult dicts ("latency"), keyed by batch as text."""
    lat = (block or {}).get("latency")
    return {str(b): r for b, r in lat.items() if isinstance(r, dict)} if isinstance(lat, dict) else {}


def _head_batch(entries: dict[str, dict[str, Any]]) -> str | None:
    """The batch whose median is `latency_ms`: 1 when measured, else the first (as measure.model_metrics does)."""
    return "1" if "1" in entries else next(iter(entries), None)


def _latency_setting(r: dict[str, Any]) -> str:
    """'batch 64, 4 threads, cpu' from one LatencyResult dict (threads are not fixed on CUDA: left out)."""
    parts = [f"batch {r.get('batch')}"]
    if r.get("threads") is not None:
        parts.append(_threads(r["threads"]))
    return ", ".join(parts + ([str(r["device"])] if r.get("device") else []))


def measured_at(report: dict[str, Any]) -> dict[str, str]:
    """What the metric rows were measured at, for their labels: "macs" (batch 1, or batch 1 x seq_len tokens for
    hf runs), "latency_ms" (its batch, thread count and device from metrics.*.latency, or batch x seq_len and
    threads from extra.latency for hf runs) and "size_bytes" (the state dict's safetensors bytes; after Deep
    Compression, the compressed file's)."""
    metrics, extra = report.get("metrics") or {}, report.get("extra") or {}
    at = {"macs": "batch 1", "size_bytes": TERM_UNITS["size"]}
    if extra.get("deep_compression"):  # its result is the compressed file (the Huffman stage), measured as such
        at["size_bytes"] = f"{TERM_UNITS['size']} / compressed file bytes"
    seq = (extra.get("macs_input") or {}).get("seq_len") or (report.get("data") or {}).get("seq_len")
    if seq:  # hf runs count MACs on one window of seq_len tokens
        at["macs"] = f"batch 1 x {seq} tokens"
    hf_lat = extra.get("latency")
    if isinstance(hf_lat, dict) and hf_lat.get("seq_len"):
        threads = _threads(hf_lat.get("threads"))
        at["latency_ms"] = f"batch {hf_lat.get('batch')} x {hf_lat['seq_len']} tokens, {threads}"
        return at
    settings = []
    for side in ("before", "after"):
        entries = _latency_entries(metrics.get(side))
        head = _head_batch(entries)
        if head is not None and _latency_setting(entries[head]) not in settings:
            settings.append(_latency_setting(entries[head]))
    if settings:
        at["latency_ms"] = " / ".join(settings)
    elif any((metrics.get(side) or {}).get("latency_ms") is not None for side in ("before", "after")):
        at["latency_ms"] = "batch 1"  # a time without its LatencyResult: the schema defines latency_ms at batch 1
    return at


def _other_batch_rows(before: dict[str, Any], after: dict[str, Any] | None) -> list[list[str]]:
    """latency_ms rows for the batches measured besides the head one (e.g. batch 64), with their speedup."""
    b_entries, a_entries = _latency_entries(before), _latency_entries(after)
    head = _head_batch(b_entries) or _head_batch(a_entries)
    rows = []
    for batch in [b for b in {**b_entries, **a_entries} if b != head]:
        b, a = b_entries.get(batch) or {}, a_entries.get(batch) or {}
        bm, am = b.get("median_ms"), a.get("median_ms")
        change = f"{bm / am:.2f}x faster" if bm and am else ""
        rows.append([f"latency_ms ({_latency_setting(b or a)})", _metric_text("latency_ms", bm),
                     _metric_text("latency_ms", am), change])
    return rows


def metrics_rows(before: dict[str, Any], after: dict[str, Any] | None,
                 report: dict[str, Any] | None = None) -> list[list[str]]:
    """Rows [metric, before, after, change] for the Metrics keys present; each label says what the value was
    measured at (see `measured_at`; `report` is the whole report.json, which records it)."""
    extra = ("top5", "nonzero_params", "perplexity", "mean_cosine", "min_cosine", "spearman")  # text models' quality
    keys = [k for k in (*METRIC_KEYS, *extra) if k in before or (after and k in after)]
    at = measured_at(report if report is not None else {"metrics": {"before": before, "after": after}})
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
        label = f"{k} ({at[k]})" if k in at else k
        rows.append([label, _metric_text(k, before.get(k)), _metric_text(k, (after or {}).get(k)), text])
        if k == "latency_ms":
            rows += _other_batch_rows(before, after)
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
        out += ["## Metrics", "", markdown_table(metrics_rows(metrics["before"], metrics.get("after"), report),
                                                 ["metric", "before", "after", "change"])]
    target = (report.get("extra") or {}).get("target") or {}
    if target.get("asked"):  # the fractions asked for and those the plan keeps: a missed target is stated
        asked = ", ".join(f"{k} {v:g}" + (f" ({TERM_UNITS[k]})" if k in TERM_UNITS else "")
                          for k, v in target["asked"].items())
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
