"""Policy `auto`: search per-group keep ratios that meet a target (MACs, parameters, measured latency, file size).

The search is evolutionary over one "prunability" p_g in (0, 1] per group. A vector maps to removal counts by a
single scale alpha: group g loses min(1, alpha * p_g) of what it may lose, with alpha bisected so the candidate
just meets the target; every candidate therefore spends the whole budget and only the distribution differs.
Candidates are scored by top-1 on a small validation subset after recalibrating BatchNorm statistics on a few
training batches (a cheap stand-in for accuracy after fine-tuning, as in EagleEye, Li et al. 2020). Without
data the score is a magnitude proxy (the mean log share of each group's criterion score that is kept), with a
warning. Latency is predicted by `LatencyModel` and the winner's real latency is measured and corrected.
`hw_widths` (on by default for latency targets) restricts kept widths to those that run faster than every
wider one on this device: CPU kernels work in channel blocks (16 floats for AVX-512), so 17 channels can cost
what 32 do.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..graph.cost import kept_shapes, predict
from ..graph.groups import DependencyGraph
from ..train.evaluation import recalibrate_bn  # noqa: F401 (also imported from here)
from .base import Target, clamp_counts, max_removable, register_policy
from .latency_layers import build_pruned, uniform_counts
from .latency_model import LatencyModel

log = logging.getLogger("prunekit.auto")
LAST_REPORT: dict[str, Any] = {}  # what the latest `auto` call found (also written into a `report=` dict)


# ----------------------------------------------------------------------------- targets
def size_predictor(model: nn.Module, graph: DependencyGraph) -> tuple[int, Callable[[dict], float]]:
    """(dense serialized bytes, counts -> predicted bytes): tensor bytes at the kept shapes plus the header."""
    from ..measure.size import serialized_size, unique_state_dict
    sd = unique_state_dict(model)
    dense = serialized_size(sd)
    header = dense - sum(t.numel() * t.element_size() for t in sd.values())

    def size(counts: dict[str, int]) -> float:
        shapes = kept_shapes(graph, {k: v for k, v in counts.items() if v})
        return header + sum(math.prod(max(0.0, s) for s in shapes.get(k, t.shape)) * t.element_size()
                            for k, t in sd.items())

    return dense, size


def cost_function(model, graph, target: Target, latency: LatencyModel | None) -> Callable[[dict], dict[str, float]]:
    """counts -> {term: predicted fraction of dense / required fraction}; all <= 1 means the target is met."""
    base = predict(graph, {})
    dense_size, size = size_predictor(model, graph) if target.size is not None else (1, None)
    goals = target.items()

    def cost(counts: dict[str, int]) -> dict[str, float]:
        out = {}
        if "macs" in goals or "params" in goals:
            now = predict(graph, counts)
            for k in ("macs", "params"):
                if k in goals:
                    out[k] = now[k] / max(1.0, base[k]) / goals[k]
        if "size" in goals:
            out["size"] = size(counts) / dense_size / goals["size"]
        if "latency" in goals:
            out["latency"] = latency.ratio(counts) / goals["latency"]
        return out

    return cost


# ----------------------------------------------------------------------------- data and scoring
def _take(loader, samples: int, skip: int = 0) -> list:
    """The first batches of `loader` (after `skip` batches) holding at least `samples` samples."""
    out, n = [], 0
    for i, batch in enumerate(loader):
        if i < skip:
            continue
        if n >= samples:
            break
        out.append(batch)
        first = batch[0] if isinstance(batch, (tuple, list)) else batch.get("input") if isinstance(batch, dict) else batch
        n += int(first.shape[0]) if isinstance(first, torch.Tensor) else 1
    return out


def _batches(loader, count: int) -> list:
    """`count` batches of `loader`, going through it again as often as needed."""
    out: list = []
    while len(out) < count:
        before = len(out)
        out.extend(itertools.islice(loader, count - len(out)))
        if len(out) == before:
            break
    return out


def _train_of(data):
    if hasattr(data, "_fields") and "train" in data._fields:
        return data.train
    return data.get("train") if isinstance(data, dict) else data


def short_finetune(model: nn.Module, batches: list, device: torch.device, lr: float = 0.01) -> None:
    """A few SGD steps (momentum 0.9, weight decay 5e-4) over `batches`: the stage-2 score's fine-tune."""
    import torch.nn.functional as F

    from ..train.evaluation import forward, move, split_batch
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for batch in batches:
        x, y = move(split_batch(batch), device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(model, x), y).backward()
        opt.step()
    model.eval()


def split_data(data, val_data, calib_samples: int, val_samples: int) -> tuple[list, list]:
    """(calibration batches, validation batches) from a train loader plus `val_data`, a (train, val, test)
    Loaders tuple, a {"train", "val"} dict, or one loader (calibration first, validation after it)."""
    train = data
    if hasattr(data, "_fields") and "train" in data._fields:
        train, val_data = data.train, val_data or data.val or getattr(data, "test", None)
    elif isinstance(data, dict):
        train, val_data = data.get("train"), val_data or data.get("val") or data.get("test")
    calib = _take(train, calib_samples)
    val = _take(val_data, val_samples) if val_data is not None else _take(train, val_samples, skip=len(calib))
    if not val:
        raise ValueError("auto: the data gives no validation batches (pass val_data= or more batches)")
    return calib, val


def magnitude_proxy(graph: DependencyGraph, scores: dict[str, torch.Tensor]) -> Callable[[dict], float]:
    """counts -> mean over groups of log(share of the group's non-negative score mass that is kept)."""
    prep = {}
    for g in graph.prunable_groups():
        s = scores[g.name].float().clamp_min(0)[torch.tensor(g.candidates, dtype=torch.long)]
        prep[g.name] = (torch.sort(s).values.cumsum(0), float(scores[g.name].float().clamp_min(0).sum()) + 1e-12)

    def proxy(counts: dict[str, int]) -> float:
        total = 0.0
        for name, (cum, mass) in prep.items():
            n = counts.get(name, 0)
            lost = float(cum[n - 1]) if n > 0 else 0.0
            total += math.log(max(1e-6, 1 - lost / mass))
        return total / max(1, len(prep))

    return proxy


# ----------------------------------------------------------------------------- search
@dataclass
class Candidate:
    pref: list[float]
    counts: dict[str, int]
    score: float = -math.inf
    cost: dict[str, float] = field(default_factory=dict)
    final: float = -math.inf  # stage-2 score (after a short fine-tune), when there is one


class Projector:
    """Turns a prunability vector into counts on the target boundary (bisection on one scale)."""

    def __init__(self, graph, cost, min_channels, max_ratio, widths: dict[str, list[int]] | None = None):
        self.groups = graph.prunable_groups()
        self.graph, self.cost, self.widths = graph, cost, widths or {}
        self.cap = [max_removable(g, min_channels, max_ratio) for g in self.groups]
        self.min_channels, self.max_ratio = min_channels, max_ratio
        self.scale = 1.0  # tightens the latency goal after a measured overshoot

    def counts(self, pref: list[float], alpha: float) -> dict[str, int]:
        out = {}
        for g, cap, p in zip(self.groups, self.cap, pref):
            n = int(round(min(1.0, alpha * p) * cap))
            ok = self.widths.get(g.name)
            if ok and n:
                kept = min((w for w in ok if w >= g.size - n), default=g.size)
                n = g.size - kept
            out[g.name] = n
        return clamp_counts(self.graph, out, self.min_channels, self.max_ratio)

    def worst(self, counts: dict[str, int]) -> float:
        return max(v / (self.scale if k == "latency" else 1.0) for k, v in self.cost(counts).items())

    def __call__(self, pref: list[float], iters: int = 22) -> tuple[dict[str, int], bool]:
        hi = 1.0 / max(1e-3, min(pref))
        top = self.counts(pref, hi)
        if self.worst(top) > 1.0 + 1e-9:
            return top, False  # the target is out of reach within min_channels / max_ratio
        lo, best = 0.0, top
        for _ in range(iters):
            mid = (lo + hi) / 2
            c = self.counts(pref, mid)
            if self.worst(c) <= 1.0 + 1e-9:
                hi, best = mid, c
            else:
                lo = mid
        return best, True


def _mutate(rng: random.Random, a: list[float], b: list[float], sigma: float) -> list[float]:
    child = [x if rng.random() < 0.5 else y for x, y in zip(a, b)]
    rate = max(1.0 / len(child), 0.3)
    child = [min(1.0, max(0.02, x * math.exp(rng.gauss(0, sigma)))) if rng.random() < rate else x for x in child]
    top = max(child)
    return [x / top for x in child]


def evolve(project: Projector, score: Callable[[dict], float], evaluations: int, population: int,
           sigma: float, seeds: list[list[float]], rng: random.Random, say: Callable[[str], None]) -> list[Candidate]:
    """(mu + lambda) evolution; returns every evaluated candidate, best first."""
    n = len(project.groups)
    seen: dict[tuple, Candidate] = {}
    reachable = True

    def consider(pref: list[float]) -> None:
        nonlocal reachable
        counts, ok = project(pref)
        reachable &= ok
        key = tuple(sorted(counts.items()))
        if key not in seen:
            seen[key] = Candidate(pref, counts, score(counts), project.cost(counts))

    pool = list(seeds) + [[rng.uniform(0.05, 1.0) for _ in range(n)] for _ in range(max(0, population - len(seeds)))]
    for pref in pool[:evaluations]:
        consider([p / max(pref) for p in pref])
    tries = 0
    while len(seen) < evaluations and tries < 20 * evaluations:
        tries += 1
        ranked = sorted(seen.values(), key=lambda c: -c.score)[:population]
        a, b = (max(rng.sample(ranked, min(3, len(ranked))), key=lambda c: c.score) for _ in range(2))
        before = len(seen)
        consider(_mutate(rng, a.pref, b.pref, sigma))
        if len(seen) > before and len(seen) % max(population, evaluations // 4) == 0:
            say(f"auto: {len(seen)}/{evaluations} candidates, best score {ranked[0].score:.4f}")
    if not reachable:
        warnings.warn("auto: the target cannot be met within min_channels / max_ratio; returning the most "
                      "pruned allocation found", stacklevel=3)
    return sorted(seen.values(), key=lambda c: -c.score)


def meet_latency(lm: LatencyModel, counts_at: Callable[[float], dict[str, int]], keep: float,
                 tolerance: float = 0.03, rounds: int = 3, say: Callable[[str], None] = log.info
                 ) -> tuple[dict[str, int], float]:
    """Measure the real model of `counts_at(1.0)` (counts whose predicted latency is `keep` x dense) and correct
    the predicted goal by measured / wanted: tighter while over keep * (1 + tolerance), looser while under
    keep * (1 - 2 tolerance), at most `rounds` times. Returns the last candidate within the target (else the
    last one) and its measured latency / dense latency, dense and candidate timed together."""
    scale, counts, feasible = 1.0, counts_at(1.0), None
    for i in range(rounds + 1):
        dense_ms, ms = lm.measure_many([{}, counts])
        measured = ms / dense_ms
        if measured <= keep * (1 + tolerance):
            feasible = (counts, measured)
            if measured >= keep * (1 - 2 * tolerance):
                break
        if i == rounds:
            break
        scale *= keep / measured
        say(f"auto: measured {measured:.3f} of the dense latency for a goal of {keep}; predicted goal x {scale:.3f}")
        nxt = counts_at(scale)
        if nxt == counts:
            break
        counts = nxt
    return feasible or (counts, measured)


def knob_counts(lm: LatencyModel, make_counts: Callable[[float], dict[str, int]], keep: float, hi: float = 0.95,
                iters: int = 20) -> dict[str, int]:
    """Counts of the smallest knob in [0, hi] (more knob, more pruning) whose predicted latency is <= keep x dense:
    how a one-knob policy (uniform ratio, global threshold, SRR steps) is put at a latency."""
    lo, best = 0.0, make_counts(hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        c = make_counts(mid)
        if lm.ratio(c) <= keep:
            hi, best = mid, c
        else:
            lo = mid
    return best


@register_policy("auto")
def auto(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], ratio: float | None = None,
         target: Target | None = None, min_channels: int = 1, max_ratio: float = 0.9, data=None,
         example_inputs: Any = None, seed: int = 0, *, val_data=None, evaluations: int | None = None,
         population: int = 10, sigma: float = 0.35, calib_samples: int = 512, val_samples: int = 1024,
         finalists: int = 4, finetune_steps: int = 40, finetune_lr: float = 0.01, final_val_samples: int = 2048,
         hw_widths: bool | None = None, hw_tolerance: float = 0.05, latency_model: LatencyModel | dict | None = None,
         latency_batch: int | None = None, latency_device: str | None = None, latency_threads: int | None = None,
         verify_latency: bool = True, latency_tolerance: float = 0.03, report: dict | None = None,
         log_fn: Callable[[str], None] | None = None, **_: Any) -> dict[str, int]:
    """Searched per-group removal counts meeting `target` (or the MACs of uniform `ratio` when no target).

    data: training loader (BN recalibration) and val_data: validation loader (scoring); a Loaders tuple or a
    {"train", "val"} dict also works; without data a magnitude proxy scores candidates (with a warning).
    evaluations: candidates scored (default 40 with data, 300 with the proxy). With data, the `finalists` best
    (and the uniform-like starting point) then get `finetune_steps` SGD steps each and are re-scored on
    `final_val_samples` validation samples: accuracy after a short fine-tune decides (0 skips this stage). Latency targets are fractions of
    the dense latency measured on `latency_device` (default: the model's) at `latency_batch` (default: the
    example inputs' batch) and `latency_threads`; pass `latency_model` (a LatencyModel, or LatencyModel.build
    keyword arguments such as a fake `timer`/`model_timer`) to reuse or inject one. hw_widths (default: on for
    latency targets) keeps only widths faster by more than `hw_tolerance` than every wider one on this device.
    """
    t0 = time.perf_counter()
    say = log_fn or log.info
    if target is None:
        if not ratio:
            return {}
        base = predict(graph, {})["macs"]
        target = Target(macs=predict(graph, uniform_counts(graph, ratio, min_channels, max_ratio))["macs"] / base)
    if hw_widths is None:
        hw_widths = target.latency is not None  # the latency model's step scans come for free then
    lm = latency_model if isinstance(latency_model, LatencyModel) else None
    if lm is None and (target.latency is not None or hw_widths):
        if example_inputs is None:
            raise ValueError("auto: a latency target or hw_widths needs example_inputs")
        lm = LatencyModel.build(model, example_inputs, graph=graph, min_channels=min_channels, max_ratio=max_ratio,
                                seed=seed, **({"batch": latency_batch, "device": latency_device,
                                               "threads": latency_threads, "log": say} | dict(latency_model or {})))
    widths = {g.name: lm.efficient_widths(g.name, hw_tolerance) for g in graph.prunable_groups()} if hw_widths else {}
    project = Projector(graph, cost_function(model, graph, target, lm), min_channels, max_ratio, widths)

    rng = random.Random(seed)
    if data is not None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        calib, val = split_data(data, val_data, calib_samples, val_samples)
        from ..train.evaluation import evaluate

        def score(counts: dict[str, int]) -> float:
            net = build_pruned(model, graph, counts, scores)
            recalibrate_bn(net, calib, device)
            r = evaluate(net, val, device)
            return r["top1"] - 1e-3 * r["loss"]  # ties in accuracy go to the lower loss
        mode = f"top-1 on {sum(len(b[0]) for b in val)} validation samples after BN recalibration"
    else:
        warnings.warn("auto: no data given, so candidates are scored by a magnitude proxy (the kept share of each "
                      "group's criterion score), not by accuracy; pass data=<train loader>, val_data=<val loader>",
                      stacklevel=2)
        score, mode = magnitude_proxy(graph, scores), "magnitude proxy (no data)"
    evaluations = evaluations or (40 if data is not None else 300)
    say(f"auto: target {target.items()}, scoring by {mode}, {evaluations} candidates")
    seeds = [[1.0] * len(project.groups)]
    ranked = evolve(project, score, evaluations, population, sigma, seeds, rng, say)
    best, stage2 = ranked[0], []
    if data is not None and finalists > 0 and finetune_steps > 0:
        # the few best, and the uniform-like seed, each get a short fine-tune and a larger validation subset
        pool = ranked[:finalists] + [c for c in ranked[finalists:] if c.pref == seeds[0]]
        batches = _batches(_train_of(data), finetune_steps)
        big_val = split_data(data, val_data, 0, final_val_samples)[1]
        for c in pool:
            net = build_pruned(model, graph, c.counts, scores)
            recalibrate_bn(net, calib, device)
            short_finetune(net, batches, device, finetune_lr)
            r = evaluate(net, big_val, device)
            stage2.append({"stage1": c.score, "score": r["top1"] - 1e-3 * r["loss"], "counts": c.counts})
            c.final = stage2[-1]["score"]
        best = max(pool, key=lambda c: c.final)
        say(f"auto: {len(pool)} finalists fine-tuned {finetune_steps} steps; best top-1 {best.final:.4f} "
            f"(stage-1 rank {ranked.index(best) + 1})")

    measured = None
    if lm is not None and target.latency is not None and verify_latency:

        def at_scale(scale: float) -> dict[str, int]:
            project.scale = scale
            return project(best.pref)[0]

        counts, measured = meet_latency(lm, at_scale, target.latency, latency_tolerance, say=say)
        best = Candidate(best.pref, counts, best.score, project.cost(counts), best.final)
    now = predict(graph, best.counts)
    base = predict(graph, {})
    info = {"target": target.items(), "scoring": mode, "evaluations": len(ranked), "best_score": best.score,
            "final_score": best.final if stage2 else None,
            "counts": best.counts, "cost": project.cost(best.counts), "macs_kept": now["macs"] / base["macs"],
            "params_kept": now["params"] / base["params"], "latency_measured_ratio": measured,
            "hw_widths": widths, "time_s": time.perf_counter() - t0,
            "top": [{"score": c.score, "counts": c.counts} for c in ranked[:5]], "finalists": stage2}
    if lm is not None:
        info["latency_model"] = {"dense_ms": lm.dense_ms, "predicted_ratio": lm.ratio(best.counts),
                                 "holdout": {k: v for k, v in lm.holdout.items() if k != "candidates"},
                                 "device": lm.device_signature, "batch": lm.batch, "threads": lm.threads}
    LAST_REPORT.clear()
    LAST_REPORT.update(info)
    if report is not None:
        report.update(info)
    say(f"auto: best score {best.score:.4f}, MACs kept {info['macs_kept']:.3f}, {info['time_s']:.1f} s")
    return best.counts
