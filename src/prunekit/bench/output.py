"""Writing a suite folder: results.json (settings, environment, the table), runs.json (every run in full),
results.md (the table, the budget, the exact command, versions, machine, plots)."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Sequence

from ..measure.latency import cpu_name
from ..report import environment_info, to_jsonable
from ..utils.fileio import atomic_write
from . import peer
from .config import BenchConfig

Column = tuple[str, Callable[[dict[str, Any]], str]]


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed: `prunekit bench ...` when run through the CLI, else `python script ...`."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name == "prunekit":
        argv[0] = "prunekit"
    elif argv and argv[0].endswith(".py"):
        argv = ["python", os.path.relpath(argv[0])] + argv[1:]
    return " ".join(shlex.quote(a) for a in argv)


def environment() -> dict[str, Any]:
    """Versions (python, torch, torchvision, prunekit, onnxruntime, torch-pruning) and the machine."""
    env = environment_info()
    try:
        env["versions"]["onnxruntime"] = version("onnxruntime")
    except PackageNotFoundError:  # optional
        env["versions"]["onnxruntime"] = None
    env["versions"]["torch_pruning"] = peer.version()
    env["machine"]["cpu"] = cpu_name() or platform.processor()
    try:
        env["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return env


def pct(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * float(v):.{digits}f}%"


def acc(row: dict[str, Any], key: str = "top1") -> str:
    m, s = row.get(key), row.get(f"{key}_std")
    if m is None:
        return "-"
    return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None and row.get("n_seeds", 1) > 1 else f"{100 * m:.2f}"


def num(v: Any, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else f"{float(v):{fmt}}{suffix}"


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(fn(r)).replace("|", "\\|") for _, fn in columns) + " |")
    return "\n".join(lines) + "\n"


def _wall_text(wall: float | None, runs: list[dict[str, Any]], resumed: bool) -> str:
    """The suite's wall time; for a resumed suite also the rows' own times, which span earlier runs."""
    this = "-" if wall is None else f"{wall / 60:.1f} min"
    timed = [r["wall_s"] for r in runs if isinstance(r, dict) and isinstance(r.get("wall_s"), (int, float))]
    if not resumed:
        return f"Wall time of the whole suite: {this}."
    total = f"; its {len(timed)} rows took {sum(timed) / 60:.1f} min in all, rows of earlier runs included" if timed else ""
    return f"Wall time of this (resumed) run: {this}{total}."


def write_suite(out: Path, cfg: BenchConfig, title: str, intro: str, table: list[dict[str, Any]],
                columns: Sequence[Column], runs: list[dict[str, Any]], plots: Sequence[str] = (),
                notes: Sequence[str] = (), extra_sections: Sequence[tuple[str, str]] = (),
                info: dict[str, Any] | None = None, started: float | None = None,
                not_read: dict[str, str] | None = None) -> dict[str, Any]:
    """Write results.json, runs.json and results.md into `out`; returns the results.json object. `not_read`:
    budget settings (cfg.budget() keys) the suite does not read, each with the reason; the Budget table shows the
    reason in place of the value."""
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    wall = time.time() - started if started else None
    results = {"suite": cfg.suite, "title": title, "command": cfg.command or command_line(),
               "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "wall_s": wall, "budget": cfg.budget(),
               "versions": env["versions"], "machine": env["machine"], "notes": list(notes),
               **({"info": info} if info else {}), "runs_file": "runs.json", "plots": list(plots),
               "results": table}
    atomic_write(out / "results.json", json.dumps(to_jsonable(results), indent=1) + "\n", overwrite=True)
    atomic_write(out / "runs.json", json.dumps(to_jsonable(runs), indent=1) + "\n", overwrite=True)
    md = [f"# {title}", "", intro, "", md_table(table, columns)]
    if notes:
        md += ["## Observations (computed)", ""] + [f"- {n}" for n in notes] + [""]
    for head, body in extra_sections:
        md += [f"## {head}", "", body, ""]
    budget = cfg.budget()
    md += ["## Budget", "", f"Size: **{budget['size']}**. {_wall_text(wall, runs, cfg.resume)}", "",
           md_table([{"k": k, "v": f"not read: {not_read[k]}" if k in (not_read or {}) else v}
                     for k, v in budget.items() if k != "size"],
                    [("setting", lambda r: r["k"]), ("value", lambda r: _v(r["v"]))])]
    md += ["## Command", "", "```", results["command"], "```", "",
           "## Versions and machine", "",
           md_table([{"k": k, "v": v} for k, v in {**env["versions"], **env["machine"]}.items()],
                    [("item", lambda r: r["k"]), ("value", lambda r: _v(r["v"]))])]
    if plots:
        md += ["## Plots", ""] + [f"![{p}]({p})\n" for p in plots]
    md += ["Every run in full (per seed, widths per layer, timings): `runs.json`.", ""]
    atomic_write(out / "results.md", "\n".join(md), overwrite=True)
    return results


def _v(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return "-" if v is None else str(v)
