"""The ``report.json`` schema, the environment block, and writing report.json + report.md atomically.

Schema (``SCHEMA_VERSION = 1``); every run folder holds one ``report.json`` object::

    schema_version  int     SCHEMA_VERSION (filled in by write_report)
    created         str     ISO-8601 UTC time (filled in)
    command         str     the command line that produced the run (default: sys.argv)
    model           object  at least "name" (e.g. "resnet20"); free extras: num_classes, width, checkpoint...
    data            object  at least "dataset" (e.g. "fashion-mnist"); free extras: sizes, root, split seed...
    method          object  optional: what was done, e.g. {"name": "oneshot", "criterion": "l1", "ratio": 0.5}
    metrics         object  {"before": Metrics, "after": Metrics or null}
        Metrics:    top1        float|null  top-1 accuracy as a fraction in [0, 1]
                    params      int         parameter elements
                    macs        int         multiply-accumulates of one forward pass at batch 1
                    latency_ms  float|null  median latency at batch 1, milliseconds
                    size_bytes  int|null    safetensors size of the state dict
                    optional:   top5, loss, nonzero_params, latency {"<batch>": LatencyResult dict}
    summary         object  derived by write_report when both before and after exist: top1_delta (after - before),
                            params_kept, macs_kept, size_kept (after / before), speedup (before / after latency)
    timings         object  {"<phase>": seconds}, e.g. {"train": 81.2, "prune": 0.4, "finetune": 40.3}
    versions        object  {"python", "torch", "torchvision", "prunekit"} (filled in when missing)
    machine         object  {"platform", "processor", "cpu_count", "torch_threads", "gpu"} (filled in when missing)
    history         list    optional: per-epoch training rows (Trainer.history)
    plots           list    optional: PNG file names in the same folder
    extra           object  optional: anything else

Units: times in seconds (timings) or milliseconds (latency), sizes in bytes, accuracies as fractions.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

import prunekit
from ..utils import atomic_write

SCHEMA_VERSION = 1
METRIC_KEYS = ("top1", "params", "macs", "latency_ms", "size_bytes")


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, tensors, numpy values, paths and tuples into plain JSON values (NaN and inf as
    null): for measured values. Settings go through prunekit.config.json_data (live objects as GIVEN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch tensors, numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (prunekit.utils.atomic_write; the caller checked the folder)."""
    return atomic_write(path, text, overwrite=True)


def environment_info() -> dict[str, dict[str, Any]]:
    """``{"versions": {...}, "machine": {...}}`` for the report: library versions and the hardware used."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    pk_version = installed("prunekit")
    if pk_version is None:  # running from a source tree

        pk_version = getattr(prunekit, "__version__", "unknown")
    tv_version = installed("torchvision")  # read from metadata: importing torchvision costs seconds
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "torchvision": tv_version,
                     "prunekit": pk_version},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu},
    }


def compare_metrics(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """Ratios between two Metrics blocks: accuracy delta, fractions kept, measured speedup."""
    def ratio(num: Any, den: Any) -> float | None:
        return float(num) / float(den) if num is not None and den not in (None, 0) else None

    top1 = (after.get("top1") - before.get("top1")) if None not in (after.get("top1"), before.get("top1")) else None
    return {"top1_delta": top1, "params_kept": ratio(after.get("params"), before.get("params")),
            "macs_kept": ratio(after.get("macs"), before.get("macs")),
            "size_kept": ratio(after.get("size_bytes"), before.get("size_bytes")),
            "speedup": ratio(before.get("latency_ms"), after.get("latency_ms"))}


def validate_report(report: dict[str, Any]) -> list[str]:
    """Problems with ``report`` against the schema (an empty list when it conforms)."""
    problems = []
    for key, kind in (("model", dict), ("data", dict), ("metrics", dict)):
        if not isinstance(report.get(key), kind):
            problems.append(f"'{key}' must be an object")
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    for side in ("before", "after"):
        block = metrics.get(side)
        if block is None:
            if side == "before":
                problems.append("'metrics.before' is required")
            continue
        if not isinstance(block, dict):
            problems.append(f"'metrics.{side}' must be an object")
            continue
        missing = [k for k in METRIC_KEYS if k not in block]
        if missing:
            problems.append(f"'metrics.{side}' lacks {missing}")
        top1 = block.get("top1")
        if isinstance(top1, (int, float)) and not 0.0 <= top1 <= 1.0:
            problems.append(f"'metrics.{side}.top1' must be a fraction in [0, 1], got {top1}")
    if "timings" in report and not isinstance(report["timings"], dict):
        problems.append("'timings' must be an object of phase -> seconds")
    return problems


def complete_report(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` with schema_version, created, command, versions, machine and summary filled in."""
    out = dict(to_jsonable(report))
    out["schema_version"] = SCHEMA_VERSION
    out.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    out.setdefault("command", " ".join(sys.argv))
    out.setdefault("timings", {})
    if "versions" not in out or "machine" not in out:
        env = environment_info()
        out.setdefault("versions", env["versions"])
        out.setdefault("machine", env["machine"])
    metrics = out.get("metrics") or {}
    if isinstance(metrics.get("before"), dict) and isinstance(metrics.get("after"), dict):
        out["summary"] = compare_metrics(metrics["before"], metrics["after"])
    return out


class ReportFileError(ValueError):
    """A report.json / results.json that cannot be read, is not JSON, or does not follow the schema."""


def read_json_file(p: Path) -> Any:
    """Parse a JSON file of a run; raises ReportFileError naming it when unreadable or not JSON."""
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ReportFileError(f"{p}: not a JSON report (not UTF-8 text at byte {e.start})") from None
    except OSError as e:
        raise ReportFileError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportFileError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a report.json (a folder is taken to contain one).

    Raises:
        ReportFileError: unreadable, not JSON, not an object, or not following the schema (names the file).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    report = read_json_file(p)
    if not isinstance(report, dict):
        raise ReportFileError(f"{p}: a report is a JSON object, found {type(report).__name__}")
    problems = validate_report(report)
    if problems:
        raise ReportFileError(f"{p} does not follow the report schema: " + "; ".join(problems))
    return report


def check_readable(folder: str | os.PathLike, depth: int = 0) -> None:
    """Read every report.json and results.json in `folder` and `depth` levels of subfolders; raises
    ReportFileError naming the first that is unreadable, not JSON, or (report.json) off-schema."""
    folder = Path(folder)
    if (folder / "report.json").is_file():
        read_report(folder / "report.json")
    if (folder / "results.json").is_file():
        read_json_file(folder / "results.json")
    if depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            check_readable(sub, depth - 1)


def union_columns(rows: Iterable[dict[str, Any]], first: Sequence[str] = ()) -> list[str]:
    """Column names of a list of dicts: ``first`` (those present), then the rest in order of appearance."""
    seen: list[str] = []
    for row in rows:
        for k in row:
            if k not in seen:
                seen.append(k)
    return [c for c in first if c in seen] + [c for c in seen if c not in first]
