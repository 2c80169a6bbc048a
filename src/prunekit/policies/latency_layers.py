"""Latency tables, the parts: which layers a model runs (from a trace), how to build one layer alone at given
widths, how to time it (or a whole model) on this device, and where the tables are cached. `latency_model`
puts them together into a predictor.
"""
from __future__ import annotations

import copy
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..graph.groups import DependencyGraph
from ..graph.plan import PruningPlan
from ..measure.inputs import call_model
from ..measure.latency import Threads, cpu_name
from ..surgery import apply
from .base import clamp_counts, max_removable, select_kept

CACHE_VERSION = 1
Timer = Callable[[dict, int, int], float]
_KINDS = {nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv", nn.Linear: "linear",
          nn.BatchNorm1d: "norm", nn.BatchNorm2d: "norm", nn.BatchNorm3d: "norm", nn.LayerNorm: "norm"}


def cache_dir() -> Path:
    """Folder of the latency tables: $PRUNEKIT_CACHE/latency, else $XDG_CACHE_HOME (or ~/.cache)/prunekit/latency."""
    base = os.environ.get("PRUNEKIT_CACHE")
    if base:
        return Path(base) / "latency"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prunekit" / "latency"


def device_signature(device: torch.device, threads: int | None) -> str:
    """Which hardware and software the timings belong to."""
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = cpu_name() or platform.processor() or platform.machine()
        hw += f" x{os.cpu_count()} threads={threads}"
    return f"{device.type}: {hw} | torch {torch.__version__}"


# ----------------------------------------------------------------------------- layers seen in a trace
def trace_layers(model: nn.Module, graph: DependencyGraph, example_inputs: Any) -> list[dict]:
    """Every conv / linear / norm call of one forward: its configuration, full widths and controlling groups."""
    owner = {(m.key, m.dim): g.name for g in graph.groups if g.prunable for m in g.members}
    seen: list[dict] = []
    hooks = []
    for name, mod in model.named_modules():
        kind = _KINDS.get(type(mod))
        if kind is None or getattr(mod, "weight", None) is None and kind != "norm":
            continue

        def hook(m, args, _out, name=name, kind=kind):
            if args and isinstance(args[0], torch.Tensor):
                seen.append(_layer(name, kind, m, tuple(args[0].shape), owner))

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            call_model(model.eval(), example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return [layer for layer in seen if layer is not None]


def _layer(name: str, kind: str, m: nn.Module, shape: tuple[int, ...], owner: dict) -> dict | None:
    key = f"{name}.weight" if name else "weight"
    if kind == "norm" and getattr(m, "weight", None) is None:
        key = f"{name}.running_mean"
    cfg: dict[str, Any] = {"kind": kind, "type": type(m).__name__, "shape": list(shape[1:])}
    if kind == "conv":
        depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        cfg.update(kernel=list(m.kernel_size), stride=list(m.stride), padding=m.padding if isinstance(m.padding, str)
                   else list(m.padding), dilation=list(m.dilation), groups=1 if depthwise else m.groups,
                   depthwise=depthwise, bias=m.bias is not None)
        full, cdim = (m.in_channels, m.out_channels), 1
        g_in = owner.get((key, 0)) if depthwise else owner.get((key, 1))
    elif kind == "linear":
        cfg["bias"] = m.bias is not None
        full, cdim, g_in = (m.in_features, m.out_features), len(shape) - 1, owner.get((key, 1))
    else:
        c = int(m.normalized_shape[-1]) if isinstance(m, nn.LayerNorm) else m.num_features
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
            return None
        cfg["affine"] = getattr(m, "weight", None) is not None
        full, cdim = (c, c), (len(shape) - 1 if isinstance(m, nn.LayerNorm) else 1)
        g_in = owner.get((key, 0))
    cfg["shape"][cdim - 1] = 0  # the channel dim is filled in per width; dim 0 (the batch) is dropped
    cfg["cdim"] = cdim
    return {"name": name, "key": key, "config": cfg, "full": list(full), "in_group": g_in,
            "out_group": owner.get((key, 0)), "square": kind == "norm" or cfg.get("depthwise", False)}


def layer_widths(layer: dict, shapes: dict[str, list[float]]) -> tuple[int, int]:
    """(c_in, c_out) of a layer once the tensors have `shapes` (from graph.cost.kept_shapes)."""
    w = shapes.get(layer["key"])
    if w is None:
        return tuple(layer["full"])
    out = max(1, int(round(w[0])))
    if layer["square"]:
        return out, out
    groups = layer["config"].get("groups", 1)
    return max(1, int(round(w[1])) * groups), out


def _rates(graph: DependencyGraph, layer: dict) -> tuple:
    """(dim-0 size, [(group, positions lost per channel)], dim-1 size, [...]) of a layer's tensor."""
    key = layer["key"]
    shape = graph.shapes.get(key)
    if shape is None:
        full = layer["full"]
        return full[1], [], full[0], []
    per: list[list] = [[], []]
    for g in graph.groups:
        for m in g.members:
            if m.key == key and m.dim in (0, 1):
                per[m.dim].append((g.name, sum(len(ix) for ix in m.index) / max(1, g.size)))
    return shape[0], per[0], (shape[1] if len(shape) > 1 else shape[0]), per[1]


def build_layer(config: dict, c_in: int, c_out: int) -> tuple[nn.Module, list[int]]:
    """A fresh module of the traced configuration at the given widths, and its input shape (with batch)."""
    shape = list(config["shape"])
    cdim = config["cdim"]
    kind = config["kind"]
    if kind == "conv":
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(config["kernel"])]
        groups = c_in if config["depthwise"] else config["groups"]
        c_out = c_in if config["depthwise"] else c_out
        pad = config["padding"] if isinstance(config["padding"], str) else tuple(config["padding"])
        mod = cls(c_in, c_out, tuple(config["kernel"]), tuple(config["stride"]), pad, tuple(config["dilation"]),
                  groups, bias=config["bias"])
    elif kind == "linear":
        mod = nn.Linear(c_in, c_out, bias=config["bias"])
    elif config["type"] == "LayerNorm":
        mod = nn.LayerNorm(c_in, elementwise_affine=config["affine"])
    else:
        mod = getattr(nn, config["type"])(c_in, affine=config["affine"])
    shape[cdim - 1] = c_in
    return mod.eval(), shape


def time_run(fn: Callable[[], Any], device: torch.device, threads: int | None, warmup: int, runs: int,
             stat: str = "min", clock: str = "auto") -> float:
    """Milliseconds of fn() at a fixed thread count (CUDA synchronised): the fastest run ("min") or "median".

    clock "cpu" counts the calling thread's CPU time, "wall" elapsed time; "auto" picks "cpu" on a CPU with one
    torch thread (ops then run in the calling thread), so other processes preempting it on a shared machine do
    not count, and "wall" otherwise. The fastest of many runs is likewise the robust choice on a busy machine.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    if clock == "auto":
        clock = "cpu" if device.type == "cpu" and threads == 1 else "wall"
    now = time.thread_time if clock == "cpu" else time.perf_counter
    times = []
    with Threads(threads if device.type == "cpu" else None), torch.inference_mode():
        for i in range(warmup + runs):
            start = now()
            fn()
            if sync:
                sync()
            if i >= warmup:
                times.append((now() - start) * 1000.0)
    return min(times) if stat == "min" else statistics.median(times)


def time_layer(config: dict, c_in: int, c_out: int, batch: int, device: torch.device, threads: int | None,
               warmup: int = 3, runs: int = 15, stat: str = "min", clock: str = "auto") -> float:
    """Milliseconds of one isolated layer at the given widths (weights and input from a fixed seed, drawn
    without touching the caller's random state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mod, shape = build_layer(config, c_in, c_out)
        x = torch.randn(batch, *shape)
    mod, x = mod.to(device), x.to(device)
    return time_run(lambda: mod(x), device, threads, warmup, runs, stat, clock)


def time_model(model: nn.Module, inputs: Any, device: torch.device, threads: int | None, warmup: int = 5,
               runs: int = 20, stat: str = "min", clock: str = "auto") -> float:
    """Milliseconds of one forward pass of the whole model in eval mode (see time_run)."""
    was = model.training
    model.eval()
    try:
        return time_run(lambda: call_model(model, inputs), device, threads, warmup, runs, stat, clock)
    finally:
        model.train(was)


# ----------------------------------------------------------------------------- building real candidates
def build_pruned(model: nn.Module, graph: DependencyGraph, counts: dict[str, int],
                 scores: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A pruned copy of `model` removing `counts[group]` channels (lowest scores; without scores, the last ones)."""
    if scores is None:
        scores = {g.name: -torch.arange(g.size, dtype=torch.float) for g in graph.prunable_groups()}
    plan = PruningPlan.from_kept(graph, select_kept(graph, scores, counts))
    return apply(copy.deepcopy(model), plan)


def random_counts(graph: DependencyGraph, rng: random.Random, min_channels: int = 1, max_ratio: float = 0.9,
                  spread: float = 0.35) -> dict[str, int]:
    """A random candidate: a level drawn in [0, 1], then per group a removal fraction of what may go within
    `spread` of it, so candidates span near-dense to near-empty and their groups still differ."""
    level = rng.random()
    return clamp_counts(graph, {g.name: int(round(min(1.0, max(0.0, level + rng.uniform(-spread, spread)))
                                                  * max_removable(g, min_channels, max_ratio)))
                                for g in graph.prunable_groups()}, min_channels, max_ratio)


def uniform_counts(graph: DependencyGraph, ratio: float, min_channels: int = 1, max_ratio: float = 0.9) -> dict:
    return clamp_counts(graph, {g.name: int(round(ratio * g.size)) for g in graph.prunable_groups()},
                        min_channels, max_ratio)


# ----------------------------------------------------------------------------- the model
