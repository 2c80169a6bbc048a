"""Paired latency: the models being compared are timed in alternation, run by run, so that load from other
processes on a shared machine falls on all of them alike; each gets the median of its runs after warm-up."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..measure import export_onnx
from ..measure.inputs import rebatch


def alternate_times(fns: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of every timed call of each function, the functions called in turn, run by run."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, runs)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1000.0)
    return times


def _alternate(fns: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in alternate_times(fns, runs, warmup).items()}


def paired_latency(models: dict[str, nn.Module], example: torch.Tensor, batch: int, runs: int = 20,
                   warmup: int = 3, threads: int | None = 1) -> dict[str, float]:
    """Median milliseconds per forward pass of each model at `batch` (torch, CPU, eval, inference mode)."""
    x = rebatch(example, batch)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    nets = {k: m.cpu().eval() for k, m in models.items()}
    try:
        with torch.inference_mode():
            return _alternate({k: (lambda m=m: m(x)) for k, m in nets.items()}, runs, warmup)
    finally:
        torch.set_num_threads(before)


def paired_onnx_latency(models: dict[str, nn.Module], example: torch.Tensor, batches: list[int], runs: int = 20,
                        warmup: int = 3, threads: int | None = 1) -> dict[int, dict[str, float]]:
    """The same with onnxruntime (CPU provider, `threads` intra-op threads): {batch: {name: median ms}}."""
    import onnxruntime as ort

    out: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for k, m in models.items():
            path = export_onnx(m.cpu().eval(), example, Path(tmp) / f"{k}.onnx")
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
                opts.inter_op_num_threads = 1
            sessions[k] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for b in batches:
            x = rebatch(example, b).numpy()
            fns = {k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for k, s in sessions.items()}
            out[int(b)] = _alternate(fns, runs, warmup)
    return out
