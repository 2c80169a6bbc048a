"""Tables printed on the terminal (rich): metric tables, before/after comparisons, the channel-group analysis."""
from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from .markdown import format_bytes, format_count


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """A two-column table (metric, value)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def metric_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows of one report.json Metrics block."""
    rows = []
    if m.get("top1") is not None:
        rows.append(("top-1 accuracy", f"{100 * m['top1']:.2f}%"))
    rows += [("parameters", f"{m['params']:,} ({format_count(m['params'])})"),
             ("MACs", f"{m['macs']:,} ({format_count(m['macs'])})"),
             ("size", f"{m['size_bytes']:,} B ({format_bytes(m['size_bytes'])})")]
    for b, r in (m.get("latency") or {}).items():
        rows.append((f"latency, batch {b} ({r['device']}, {r['threads']} threads)", f"{r['median_ms']:.3f} ms"))
    return rows


def before_after_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) rows: accuracy, params, MACs, size and each latency batch."""
    def pct(a, b):
        return f"{100 * a / b:.1f}%" if a is not None and b else "-"

    rows = [("top-1 accuracy", f"{100 * before['top1']:.2f}%", f"{100 * after['top1']:.2f}%",
             f"{100 * (after['top1'] - before['top1']):+.2f} pts")]
    for key, fmt in (("params", format_count), ("macs", format_count), ("size_bytes", format_bytes)):
        rows.append((key.replace("_bytes", "").replace("macs", "MACs"), fmt(before[key]), fmt(after[key]),
                     pct(after[key], before[key])))
        if key == "params" and after.get("nonzero_params") not in (None, after["params"]):  # weights zeroed
            rows.append(("nonzero params", format_count(before.get("nonzero_params")),
                         format_count(after["nonzero_params"]),
                         pct(after["nonzero_params"], before.get("nonzero_params"))))
    for b in sorted(set(before.get("latency") or {}) & set(after.get("latency") or {}), key=int):
        lb, la = before["latency"][b]["median_ms"], after["latency"][b]["median_ms"]
        rows.append((f"CPU latency, batch {b}", f"{lb:.2f} ms", f"{la:.2f} ms", f"{lb / la:.2f}x faster"))
    return rows


def print_before_after(title: str, rows: Sequence[tuple[str, str, str, str]]) -> None:
    """A four-column table of `before_after_rows`."""
    t = Table(title=title)
    for c, j in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(c, justify=j)
    for r in rows:
        t.add_row(*r)
    Console().print(t)


def print_analysis(rows: list[dict[str, Any]], title: str) -> None:
    """The analysis of `report.analysis.analyze_model` as a table, with how to read it."""
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
