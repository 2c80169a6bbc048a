"""Latency: the median of many timed forward passes after warm-up, at a fixed thread count."""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .inputs import Inputs, batch_size_of, call_model, model_device, rebatch, to_device


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it ("" where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@dataclass(frozen=True)
class LatencyResult:
    """Timing of one configuration; times are milliseconds per forward pass of the whole batch."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    batch: int | None
    threads: int | None
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(times_ms: list[float], batch: int | None, threads: int | None, device: str) -> LatencyResult:
    """Median, 90th percentile, mean and standard deviation of a list of timings."""
    if not times_ms:
        raise ValueError("no timings to summarise (runs must be >= 1)")
    ordered = sorted(times_ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    std = statistics.pstdev(ordered) if len(ordered) > 1 else 0.0
    return LatencyResult(median_ms=statistics.median(ordered), p90_ms=p90, mean_ms=statistics.fmean(ordered),
                         std_ms=std, runs=len(ordered), batch=batch, threads=threads, device=device)


def time_callable(fn: Callable[[], Any], warmup: int, runs: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; milliseconds per call."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class Threads:
    """Context manager that fixes torch's intra-op thread count and restores the previous one."""

    def __init__(self, threads: int | None):
        self.threads, self.previous = threads, torch.get_num_threads()

    def __enter__(self) -> int:
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        return torch.get_num_threads()

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.previous)


def measure_latency(model: nn.Module, example_inputs: Inputs, device: str | torch.device = "cpu",
                    threads: int | None = None, warmup: int = 10, runs: int = 50,
                    batch_size: int | None = None) -> LatencyResult:
    """Time ``model(example_inputs)`` in eval mode under ``torch.inference_mode``.

    ``batch_size`` resizes dimension 0 of the inputs (repeating samples as needed). ``threads`` fixes torch's
    thread count for the measurement (the previous count is restored; the count used is recorded either way).
    On CUDA every run is synchronised. The model is not moved: a copy is timed when ``device`` differs.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("measure_latency(device='cuda') but CUDA is not available")
    inputs = rebatch(example_inputs, batch_size) if batch_size is not None else example_inputs
    batch = batch_size_of(inputs)
    net = model
    current = model_device(model)
    if current.type != device.type or (device.index is not None and current.index != device.index):
        net = copy.deepcopy(model).to(device)
    inputs = to_device(inputs, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    was_training = net.training
    net.eval()
    try:
        with Threads(threads) as used, torch.inference_mode():
            times = time_callable(lambda: call_model(net, inputs), warmup, runs, sync)
    finally:
        net.train(was_training)
    return summarize(times, batch, used if device.type == "cpu" else threads, str(device))


def latency_at_batches(model: nn.Module, example_inputs: Inputs, batches: Iterable[int] = (1, 64),
                       **kwargs: Any) -> dict[int, LatencyResult]:
    """``measure_latency`` at each batch size (default 1 and 64, as the benchmarks report)."""
    return {int(b): measure_latency(model, example_inputs, batch_size=int(b), **kwargs) for b in batches}


def speedup(dense: LatencyResult, pruned: LatencyResult) -> float:
    """Measured speedup: dense median latency / pruned median latency."""
    return dense.median_ms / pruned.median_ms
