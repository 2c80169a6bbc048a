"""Latency model: predict a pruned model's latency on this device from per-group removal counts.

NetAdapt-style lookup tables. Every conv / linear / norm layer is timed in isolation (same kind, kernel, stride,
the input shape seen in a trace, batch, device and thread count) on a grid of (input, output) widths; the
widths come from the channel groups, so a layer between two groups is a 2-D table. Identical layer configurations
are timed once. A candidate's latency is ``a + b * sum(layer times interpolated at its widths)``: an additive
model over layers (and so over groups), plus a constant. ``a`` and ``b`` are fitted on a few real pruned models
(dense included), which absorbs what isolated layers miss (elementwise ops, framework overhead); other real
models, held back from the fit, give the prediction error. Tables are cached per device and model in
``~/.cache/prunekit/latency/`` (``$PRUNEKIT_CACHE`` or ``$XDG_CACHE_HOME`` move it).

Injectable: ``timer(config, c_in, c_out) -> ms`` times one layer and ``model_timer(model) -> ms`` one model,
so tests run on a fake latency table.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..probing import trace
from ..graph.groups import DependencyGraph
from ..measure.inputs import rebatch, to_device
from ..utils.fileio import atomic_write
from .base import max_removable

from .latency_layers import (CACHE_VERSION, Timer, _rates, build_pruned, cache_dir, device_signature, random_counts,
                             time_layer, time_model, trace_layers, uniform_counts)


class LatencyModel:
    """Predicts latency (ms) of a model after per-group removals; see the module docstring."""

    def __init__(self, model: nn.Module, graph: DependencyGraph, example_inputs: Any, batch: int | None = None,
                 device: str | torch.device | None = None, threads: int | None = None, timer: Timer | None = None,
                 model_timer: Callable[[nn.Module], float] | None = None, points: int = 6, min_channels: int = 1,
                 max_ratio: float = 0.9, runs: int = 15, model_runs: int = 6, stat: str = "min",
                 clock: str = "auto", fine: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.model, self.graph = model, graph
        self.device = torch.device(device) if device is not None else next(
            (p.device for p in model.parameters()), torch.device("cpu"))
        self.threads = (threads or torch.get_num_threads()) if self.device.type == "cpu" else None
        first = example_inputs if isinstance(example_inputs, torch.Tensor) else None
        self.batch = int(batch or (first.shape[0] if first is not None and first.dim() else 1))
        self.example_inputs = rebatch(example_inputs, self.batch)
        self.min_channels, self.max_ratio, self.points, self.fine = min_channels, max_ratio, points, fine
        self.injected = timer is not None or model_timer is not None
        self.timer = timer or (lambda cfg, ci, co: time_layer(cfg, ci, co, self.batch, self.device, self.threads,
                                                              runs=runs, stat=stat, clock=clock))
        inputs = to_device(self.example_inputs, self.device)
        self.model_timer = model_timer or (lambda m: time_model(m, inputs, self.device, self.threads,
                                                                2, model_runs, stat,
                                                                clock))
        self.log = log or (lambda s: None)
        self.layers = trace_layers(model, graph, example_inputs)
        for d in self.layers:
            d["ckey"] = json.dumps(d["config"], sort_keys=True)
        self._rates: list | None = None
        self.table: dict[str, dict[str, float]] = {}
        self.coef, self.dense_ms, self.drift = [0.0, 1.0], float("nan"), 1.0
        self.calibration: list[dict] = []
        self.holdout: dict[str, Any] = {}

    # -- identity and cache
    @property
    def device_signature(self) -> str:
        return "injected timer" if self.injected else device_signature(self.device, self.threads)

    @property
    def signature(self) -> str:
        """Hash of device, batch, layers and groups: what the tables and the calibration depend on."""
        body = json.dumps([self.device_signature, self.batch, [(d["config"], d["full"], d["in_group"],
                           d["out_group"]) for d in self.layers], [(g.name, g.size) for g in self.graph.groups]],
                          sort_keys=True, default=str)
        return hashlib.sha1(body.encode()).hexdigest()[:16]

    def cache_path(self, folder: str | Path | None = None) -> Path:
        dev = hashlib.sha1(self.device_signature.encode()).hexdigest()[:8]
        return Path(folder or cache_dir()) / f"{self.device.type}-{dev}-b{self.batch}-{self.signature}.json"

    def to_dict(self) -> dict:
        return {"version": CACHE_VERSION, "device": self.device_signature, "batch": self.batch,
                "threads": self.threads, "signature": self.signature, "table": self.table, "coef": self.coef,
                "dense_ms": self.dense_ms, "calibration": self.calibration, "holdout": self.holdout}

    def load(self, path: Path) -> bool:
        """Take tables and calibration from a cache file of the same signature; False if absent or stale."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if data.get("version") != CACHE_VERSION or data.get("signature") != self.signature:
            return False
        self.table = {k: dict(v) for k, v in data["table"].items()}
        self.coef, self.dense_ms = list(data["coef"]), data["dense_ms"]
        self.calibration, self.holdout = data.get("calibration", []), data.get("holdout", {})
        return True

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.to_dict(), indent=1), overwrite=True)

    # -- tables
    def group_grid(self, name: str) -> list[int]:
        """Kept widths of a group at which its layers are timed: `points` evenly spaced from the floor to full."""
        g = self.graph.group(name)
        lo = g.size - max_removable(g, self.min_channels, self.max_ratio)
        n = max(2, self.points)
        return sorted({int(round(lo + (g.size - lo) * i / (n - 1))) for i in range(n)})

    def _dim_grid(self, layer: dict, side: int, fine: bool = False) -> list[int]:
        """Widths of one dim of a layer to time: the group grid, or (fine) every width the group may take."""
        memo = layer.setdefault("_grids", {})
        if (side, fine) not in memo:
            gname = layer["in_group"] if side == 0 else layer["out_group"]
            full = layer["full"][side]
            if gname is None:
                memo[side, fine] = [full]
            else:
                g = self.graph.group(gname)
                widths = range(g.size - max_removable(g, self.min_channels, self.max_ratio), g.size + 1) \
                    if fine else self.group_grid(gname)
                memo[side, fine] = sorted({max(1, int(round(w * full / g.size))) for w in widths})
        return memo[side, fine]

    def _entry(self, layer: dict, c_in: int, c_out: int) -> float:
        cell = self.table.setdefault(layer["ckey"], {})
        at = f"{c_in},{c_out}"
        if at not in cell:
            cell[at] = float(self.timer(layer["config"], c_in, c_out))
        return cell[at]

    def measure_tables(self) -> None:
        """Time every layer configuration on its width grid (identical configurations once); with `fine`, also
        every width a group may take, the layer's other dim at full width (the 1-D step corrections)."""
        for layer in self.layers:
            ins = self._dim_grid(layer, 0)
            outs = ins if layer["square"] else self._dim_grid(layer, 1)
            for ci in ins:
                for co in ([ci] if layer["square"] else outs):
                    self._entry(layer, ci, co)
            if self.fine:
                f_in, f_out = layer["full"]
                for ci in self._dim_grid(layer, 0, fine=True):
                    self._entry(layer, ci, ci if layer["square"] else f_out)
                if not layer["square"]:
                    for co in self._dim_grid(layer, 1, fine=True):
                        self._entry(layer, f_in, co)

    def _bilinear(self, layer: dict, c_in: int, c_out: int) -> float:
        ins = self._dim_grid(layer, 0)
        if layer["square"]:
            (i0, i1), t = _bracket(ins, c_in)
            return _lerp(self._entry(layer, i0, i0), self._entry(layer, i1, i1), t)
        outs = self._dim_grid(layer, 1)
        (i0, i1), s = _bracket(ins, c_in)
        (o0, o1), t = _bracket(outs, c_out)
        lo = _lerp(self._entry(layer, i0, o0), self._entry(layer, i0, o1), t)
        hi = _lerp(self._entry(layer, i1, o0), self._entry(layer, i1, o1), t)
        return _lerp(lo, hi, s)

    def _interp(self, layer: dict, c_in: int, c_out: int) -> float:
        """Table time of a layer at any widths: bilinear over the grid, times measured 1-D step corrections.

        With `fine`, a width off the grid is also timed with the other dim at full width, and the ratio to the
        bilinear value there corrects the estimate (a separable model of width-dependent kernel choices, such as
        channel blocks of 8 or 16). Norm layers (one width) are simply timed at the width asked for, and any
        entry timed exactly (a grid point, a step scan) is used as it is.
        """
        exact = self.table.get(layer["ckey"], {}).get(f"{c_in},{c_out}")
        if exact is not None:
            return exact
        if not self.fine:
            return self._bilinear(layer, c_in, c_out)
        if layer["square"]:
            return self._entry(layer, c_in, c_in)
        f_in, f_out = layer["full"]
        est = self._bilinear(layer, c_in, c_out)
        if c_in != f_in and c_in not in self._dim_grid(layer, 0):
            est *= self._entry(layer, c_in, f_out) / max(1e-12, self._bilinear(layer, c_in, f_out))
        if c_out != f_out and c_out not in self._dim_grid(layer, 1):
            est *= self._entry(layer, f_in, c_out) / max(1e-12, self._bilinear(layer, f_in, c_out))
        return est

    def widths(self, counts: dict[str, int]) -> list[tuple[int, int]]:
        """(c_in, c_out) of every layer after the removals (what layer_widths gives, without kept_shapes)."""
        if self._rates is None:
            self._rates = [_rates(self.graph, d) for d in self.layers]
        out = []
        for d, (w0, r0, w1, r1) in zip(self.layers, self._rates):
            co = max(1, int(round(w0 - sum(r * counts.get(g, 0) for g, r in r0))))
            if d["square"]:
                out.append((co, co))
            else:
                ci = max(1, int(round(w1 - sum(r * counts.get(g, 0) for g, r in r1))))
                out.append((ci * d["config"].get("groups", 1), co))
        return out

    def raw(self, counts: dict[str, int]) -> float:
        """Sum of the layers' table times at the candidate's widths (before calibration)."""
        return sum(self._interp(d, *w) for d, w in zip(self.layers, self.widths(counts)))

    def predict(self, counts: dict[str, int]) -> float:
        """Predicted latency in ms of the model after removing `counts[group]` channels per group."""
        return self.drift * (self.coef[0] + self.coef[1] * self.raw(counts))

    def ratio(self, counts: dict[str, int]) -> float:
        """Predicted latency as a fraction of the dense latency, both predicted (the fit passes through the
        measured dense model; one slow dense timing on a busy machine must not make every candidate "fast")."""
        return self.predict(counts) / self.predict({})

    # -- calibration against real models
    def measure(self, counts: dict[str, int]) -> float:
        """Measured latency (ms) of the real pruned model."""
        return self.measure_many([counts])[0]

    def measure_many(self, candidates: list[dict[str, int]], rounds: int = 5) -> list[float]:
        """Measured latencies of several real models, timed round-robin in `rounds` passes (fastest kept), so a
        spell of load on a shared machine is spread over all candidates instead of landing on one."""
        nets = [build_pruned(self.model, self.graph, c) if c else self.model for c in candidates]
        best = [math.inf] * len(nets)
        for _ in range(max(1, rounds)):
            for i, net in enumerate(nets):
                best[i] = min(best[i], float(self.model_timer(net)))
        return best

    def calibrate(self, calib: int = 6, holdout: int = 6, seed: int = 0) -> None:
        """Fit a, b on the dense model, three uniform and `calib` random candidates; score `holdout` others."""
        rng = random.Random(seed)
        cands = [{}] + [uniform_counts(self.graph, r, self.min_channels, self.max_ratio) for r in (0.3, 0.6, 0.85)]
        cands += [random_counts(self.graph, rng, self.min_channels, self.max_ratio) for _ in range(calib)]
        measured = self.measure_many(cands)
        self.calibration = [{"counts": c, "raw": self.raw(c), "measured_ms": m} for c, m in zip(cands, measured)]
        self.dense_ms = measured[0]
        self.coef = _fit([c["raw"] for c in self.calibration], measured)
        self.log(f"latency model: dense {self.dense_ms:.3f} ms, fit {self.coef[0]:.3f} + {self.coef[1]:.3f} * tables")
        if holdout:
            rng2, held = random.Random(seed + 7919), []
            for _ in range(50 * holdout):  # distinct, and none of them used in the fit
                c = random_counts(self.graph, rng2, self.min_channels, self.max_ratio)
                if c not in cands and c not in held:
                    held.append(c)
                if len(held) == holdout:
                    break
            self.holdout = self.evaluate(held)
            self.log(f"latency model: held-back error mean {100 * self.holdout['mean_abs_err']:.1f}% "
                     f"max {100 * self.holdout['max_abs_err']:.1f}% over {holdout} real models")

    def evaluate(self, candidates: list[dict[str, int]]) -> dict[str, Any]:
        """Prediction error on real models (none of them used in the fit): per candidate and summarised."""
        rows = []
        for c, meas in zip(candidates, self.measure_many(candidates)):
            pred = self.predict(c)
            rows.append({"counts": c, "predicted_ms": pred, "measured_ms": meas, "rel_err": (pred - meas) / meas})
        errs = [abs(r["rel_err"]) for r in rows]
        return {"candidates": rows, "mean_abs_err": sum(errs) / max(1, len(errs)), "max_abs_err": max(errs, default=0.0)}

    def refresh_dense(self) -> None:
        """Re-measure the dense model and scale predictions by the drift since the tables were made."""
        now = self.measure({})
        self.drift = now / self.dense_ms if self.dense_ms == self.dense_ms and self.dense_ms > 0 else 1.0
        self.dense_ms = now

    # -- hardware-friendly widths
    def group_curve(self, name: str, widths: list[int] | None = None) -> dict[int, float]:
        """Measured time (ms) of the layers a group touches at each kept width, the other dims at full width."""
        g = self.graph.group(name)
        lo = g.size - max_removable(g, self.min_channels, self.max_ratio)
        widths = widths or list(range(lo, g.size + 1))
        touching = [(d, side) for d in self.layers for side, key in ((0, "in_group"), (1, "out_group"))
                    if d[key] == name and not (d["square"] and side == 1)]
        curve = {}
        for w in widths:
            t = 0.0
            for d, side in touching:
                dims = list(d["full"])
                dims[side] = max(1, int(round(w * d["full"][side] / g.size)))
                if d["square"]:
                    dims = [dims[0], dims[0]]
                t += self._entry(d, dims[0], dims[1])
            curve[w] = t
        return curve

    def efficient_widths(self, name: str, tol: float = 0.05) -> list[int]:
        """Kept widths that run faster (by more than `tol`) than every wider one: the rest waste channels."""
        curve = self.group_curve(name)
        keep, best = [], math.inf
        for w in sorted(curve, reverse=True):
            if curve[w] < best * (1 - tol):
                keep.append(w)
                best = curve[w]
        return sorted(keep)

    # -- one call
    @classmethod
    def build(cls, model: nn.Module, example_inputs: Any, graph: DependencyGraph | None = None,
              calib: int = 6, holdout: int = 6, cache: bool | None = None, cache_folder: str | Path | None = None,
              refresh: bool = False, seed: int = 0, **kwargs: Any) -> "LatencyModel":
        """Trace, time the tables, calibrate and score held-back models, or load all that from the cache.

        cache=None caches real timings only (not injected timers) unless `cache_folder` is given.
        """
        if graph is None:
            graph = trace(model, example_inputs)
        lm = cls(model, graph, example_inputs, **kwargs)
        use_cache = cache if cache is not None else (not lm.injected or cache_folder is not None)
        path = lm.cache_path(cache_folder)
        if use_cache and not refresh and lm.load(path):
            lm.log(f"latency model: loaded {path}")
            if not lm.injected:
                lm.refresh_dense()
            return lm
        lm.measure_tables()
        lm.calibrate(calib, holdout, seed)
        if use_cache:
            lm.save(path)
        return lm


def _bracket(grid: list[int], x: float) -> tuple[tuple[int, int], float]:
    if x <= grid[0] or len(grid) == 1:
        return (grid[0], grid[0]), 0.0
    if x >= grid[-1]:
        return (grid[-1], grid[-1]), 0.0
    for lo, hi in zip(grid, grid[1:]):
        if lo <= x <= hi:
            return (lo, hi), (x - lo) / (hi - lo)
    raise AssertionError("unreachable")


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _fit(x: list[float], y: list[float]) -> list[float]:
    """y = a + b x minimising the squared *relative* error (small models matter as much as the dense one), with
    b > 0; else the mean ratio y / x as b with a = 0."""
    w = [1.0 / max(1e-12, yi) ** 2 for yi in y]
    sw = sum(w)
    mx = sum(wi * xi for wi, xi in zip(w, x)) / sw
    my = sum(wi * yi for wi, yi in zip(w, y)) / sw
    sxx = sum(wi * (xi - mx) ** 2 for wi, xi in zip(w, x))
    b = sum(wi * (xi - mx) * (yi - my) for wi, xi, yi in zip(w, x, y)) / sxx if sxx > 0 else 0.0
    if b <= 0:
        return [0.0, sum(yi / max(1e-12, xi) for xi, yi in zip(x, y)) / len(x)]
    return [my - b * mx, b]
