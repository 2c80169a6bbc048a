"""The int8 row of a report: accuracy, size and latency (torch and onnxruntime, batch 1 and 64) per variant."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from torch import nn

from ..measure.inputs import Inputs
from ..measure.latency import measure_latency
from .api import QuantizeResult
from .export import write_onnx
from .runtime import ort_latency, session

BATCHES = (1, 64)


def float_latency(model: nn.Module, example_inputs: Inputs, batches: Sequence[int] = BATCHES, runs: int = 30,
                  threads: int | None = 1) -> dict[str, dict[str, float]]:
    """{"torch": {batch: ms}, "onnxruntime": {batch: ms}} of a float model (median, fixed threads)."""
    torch_ms = {str(b): measure_latency(model, example_inputs, threads=threads, runs=runs, warmup=max(2, runs // 5),
                                        batch_size=int(b)).median_ms for b in batches}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_onnx(model.cpu().eval(), example_inputs, Path(tmp) / "model.onnx")
        ort_ms = {str(b): r.median_ms for b, r in ort_latency(session(path, threads), example_inputs, batches,
                                                               warmup=max(2, runs // 5), runs=runs,
                                                               threads=threads).items()}
    return {"torch": torch_ms, "onnxruntime": ort_ms}


def int8_metrics(result: QuantizeResult, example_inputs: Inputs, eval_loader: Iterable | None = None,
                 batches: Sequence[int] = BATCHES, runs: int = 30, threads: int | None = 1) -> dict[str, Any]:
    """The ``metrics.int8`` block of report.json for a quantized model.

    An onnxruntime int8 file has no torch latency and a torchao model no onnxruntime one: those are None.
    """
    lat = {str(b): r.median_ms for b, r in result.latency(example_inputs, batches, runs, threads).items()}
    by_runtime = {"torch": None, "onnxruntime": None}
    by_runtime["onnxruntime" if result.backend == "onnxruntime" else "torch"] = lat
    return {"top1": None if eval_loader is None else result.accuracy(eval_loader), "size_bytes": result.size_bytes,
            "fp32_onnx_bytes": result.fp32_size_bytes, "backend": result.backend, "method": result.method,
            "latency_by_runtime": by_runtime, "int8_vs_fp32": result.int8_vs_fp32,
            "calib_batches": result.calib_batches, "qat_steps": result.qat.steps if result.qat else 0}


def _ms(block: dict | None, runtime: str, batch: int) -> str:
    block = block or {}
    value = dict((block.get("latency_by_runtime") or {}).get(runtime) or {})
    if runtime == "torch" and not value:   # a workflow Metrics block: torch latencies under "latency"
        value = {k: r["median_ms"] for k, r in (block.get("latency") or {}).items() if isinstance(r, dict)}
    return f"{value[str(batch)]:.3f}" if str(batch) in value else "-"


def int8_table(metrics: dict[str, Any], batches: Sequence[int] = BATCHES) -> list[str]:
    """Markdown lines: one row per variant (before, after, int8) with accuracy, bytes and latency (ms)."""
    header = ["variant", "top-1", "size (bytes)"] + [f"{rt} b{b} (ms)" for rt in ("torch", "onnxruntime")
                                                     for b in batches]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ("before", "after", "int8"):
        block = metrics.get(name)
        if not isinstance(block, dict):
            continue
        top1 = block.get("top1")
        label = name if name != "int8" else f"int8 ({block.get('backend')}, {block.get('method')})"
        cells = [label, "-" if top1 is None else f"{100 * top1:.2f}%", f"{block.get('size_bytes', 0):,}"]
        cells += [_ms(block, rt, b) for rt in ("torch", "onnxruntime") for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
