"""Policy `auto`: search per-group keep ratios that meet a target (MACs, parameters, measured latency, size: the
safetensors bytes of the state dict, which a saved model file exceeds by its description and plan).

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
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..graph.cost import kept_shapes, predict
from ..graph.groups import DependencyGraph
from ..config import Config, check_float, check_int
from ..measure.size import serialized_size, unique_state_dict
from ..train.evaluation import evaluate, move, recalibrate_bn, split_batch
from ..utils.inputs import call_model
from .auto_search import Candidate, Projector, evolve, meet_latency
from .base import Allocation, Target, register_policy
from .latency_layers import build_pruned, uniform_counts
from .latency_model import LatencyModel

log = logging.getLogger("prunekit.auto")


# ----------------------------------------------------------------------------- targets
def size_predictor(model: nn.Module, graph: DependencyGraph) -> tuple[int, Callable[[dict], float]]:
    """(dense serialized bytes, counts -> predicted bytes): tensor bytes at the kept shapes plus the header."""
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
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for batch in batches:
        x, y = move(split_batch(batch), device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(call_model(model, x), y).backward()
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


# AutoConfig fields read only when a latency model is built (a latency target or hw_widths), and only for a
# latency target; `AutoConfig.unread` refuses them otherwise
LATENCY_MODEL_KEYS = ("latency_model", "latency_batch", "latency_device", "latency_threads")
LATENCY_TARGET_KEYS = ("verify_latency", "latency_tolerance")


@dataclass
class AutoConfig(Config):
    """Policy `auto`: the search budget, how candidates are scored and how latency is measured.

    val_data: validation loader for scoring (else batches after the calibration ones). evaluations: candidates
    scored (None: 40 with data, 300 with the proxy). population, sigma: the evolution's parent pool and
    mutation size. calib_samples / val_samples: BatchNorm recalibration and scoring subsets. finalists,
    finetune_steps, finetune_lr, final_val_samples: the stage-2 short fine-tune of the best candidates (0
    skips it). hw_widths (None: on for latency targets) keeps only widths faster by more than hw_tolerance
    than every wider one. latency_model: a LatencyModel to reuse, or a dict of LatencyModel.build keywords;
    latency_batch / latency_device / latency_threads: where latency is timed. verify_latency: measure the
    winner and correct within latency_tolerance. report: a dict that receives what the search found;
    log_fn: where progress lines go.
    """

    RUNTIME: ClassVar[tuple[str, ...]] = ("val_data", "latency_model", "report", "log_fn")

    val_data: Any = None
    evaluations: int | None = None
    population: int = 10
    sigma: float = 0.35
    calib_samples: int = 512
    val_samples: int = 1024
    finalists: int = 4
    finetune_steps: int = 40
    finetune_lr: float = 0.01
    final_val_samples: int = 2048
    hw_widths: bool | None = None
    hw_tolerance: float = 0.05
    latency_model: Any = None
    latency_batch: int | None = None
    latency_device: str | None = None
    latency_threads: int | None = None
    verify_latency: bool = True
    latency_tolerance: float = 0.03
    report: dict | None = None
    log_fn: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        w = "AutoConfig"
        check_int(w, "evaluations", self.evaluations, lo=1, optional=True)
        check_int(w, "population", self.population, lo=2)
        check_float(w, "sigma", self.sigma, 0.0, None, lo_open=True)
        for name in ("calib_samples", "val_samples", "final_val_samples"):
            check_int(w, name, getattr(self, name), lo=1)
        check_int(w, "finalists", self.finalists, lo=0)
        check_int(w, "finetune_steps", self.finetune_steps, lo=0)
        check_float(w, "finetune_lr", self.finetune_lr, 0.0, None, lo_open=True)
        check_float(w, "hw_tolerance", self.hw_tolerance, 0.0, 1.0, hi_open=True)
        check_float(w, "latency_tolerance", self.latency_tolerance, 0.0, 1.0, hi_open=True)
        check_int(w, "latency_batch", self.latency_batch, lo=1, optional=True)
        check_int(w, "latency_threads", self.latency_threads, lo=1, optional=True)
        if self.latency_model is not None and not isinstance(self.latency_model, (LatencyModel, dict)):
            raise TypeError(f"{w}: latency_model must be a LatencyModel or a dict of LatencyModel.build keywords")

    def unread(self, given: Iterable[str], target: Target | None) -> list[str]:
        """Messages for the options in `given` (the keys the caller set) that a search toward `target` would not
        read: the latency model's settings without a latency target or hw_widths, verify_latency /
        latency_tolerance without a latency target, hw_tolerance when hw_widths is off. A ratio (target None)
        is searched as a MACs target."""
        latency = target is not None and target.latency is not None
        hw = latency if self.hw_widths is None else self.hw_widths
        why = {**{k: "times the latency model, built only for a latency target or hw_widths=True"
                  for k in LATENCY_MODEL_KEYS if not (latency or hw)},
               **{k: "checks a latency target, and none is given" for k in LATENCY_TARGET_KEYS if not latency},
               **({"hw_tolerance": "is read only with hw_widths (on by default for a latency target)"}
                  if not hw else {})}
        return [f"{k} {why[k]}" for k in given if k in why]


@register_policy("auto", AutoConfig)
def auto(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], alloc: Allocation,
         config: AutoConfig) -> dict[str, int]:
    """Searched per-group removal counts meeting the allocation's target (or the MACs of uniform `ratio`).

    data (on the allocation): training loader (BN recalibration), with config.val_data for scoring; a
    Loaders tuple or a {"train", "val"} dict also works; without data a magnitude proxy scores candidates
    (with a warning). With data, the `finalists` best (and the uniform-like starting point) get
    `finetune_steps` SGD steps each and are re-scored on `final_val_samples` validation samples: accuracy
    after a short fine-tune decides. Latency targets are fractions of the dense latency measured on
    `latency_device` (default: the model's) at `latency_batch` (default: the example inputs' batch).
    What the search found goes to `alloc.info` (and config.report when given).
    """
    min_channels, max_ratio, data, cfg = alloc.min_channels, alloc.max_ratio, alloc.data, config
    t0 = time.perf_counter()
    say = cfg.log_fn or log.info
    target = alloc.target
    if target is None:
        if not alloc.ratio:
            return {}
        base = predict(graph, {})["macs"]
        uniform = uniform_counts(graph, alloc.ratio, min_channels, max_ratio)
        target = Target(macs=predict(graph, uniform)["macs"] / base)
    hw_widths = target.latency is not None if cfg.hw_widths is None else cfg.hw_widths
    lm = _latency_model(model, graph, target, alloc, cfg, hw_widths, say)
    widths = ({g.name: lm.efficient_widths(g.name, cfg.hw_tolerance) for g in graph.prunable_groups()}
              if hw_widths else {})
    project = Projector(graph, cost_function(model, graph, target, lm), min_channels, max_ratio, widths)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    score, mode, calib = _scorer(model, graph, scores, data, cfg, device)
    evaluations = cfg.evaluations or (40 if data is not None else 300)
    say(f"auto: target {target.items()}, scoring by {mode}, {evaluations} candidates")
    seeds = [[1.0] * len(project.groups)]
    ranked = evolve(project, score, evaluations, cfg.population, cfg.sigma, seeds, random.Random(alloc.seed), say)
    best, stage2 = ranked[0], []
    if data is not None and cfg.finalists > 0 and cfg.finetune_steps > 0:
        best, stage2 = _finalists(model, graph, scores, data, cfg, ranked, seeds[0], calib, device, say)
    measured = None
    if lm is not None and target.latency is not None and cfg.verify_latency:

        def at_scale(scale: float) -> dict[str, int]:
            project.scale = scale
            return project(best.pref)[0]

        counts, measured = meet_latency(lm, at_scale, target.latency, cfg.latency_tolerance, say=say)
        best = Candidate(best.pref, counts, best.score, project.cost(counts), best.final)
    info = _summary(graph, target, mode, ranked, best, stage2, project, measured, widths, lm, t0)
    alloc.info.update(info)
    if cfg.report is not None:
        cfg.report.update(info)
    say(f"auto: best score {best.score:.4f}, MACs kept {info['macs_kept']:.3f}, {info['time_s']:.1f} s")
    return best.counts


def _latency_model(model: nn.Module, graph: DependencyGraph, target: Target, alloc: Allocation, cfg: AutoConfig,
                   hw_widths: bool, say: Callable[[str], None]) -> LatencyModel | None:
    """The given LatencyModel, or one built when a latency target or hw_widths needs it (else None)."""
    if isinstance(cfg.latency_model, LatencyModel):
        return cfg.latency_model
    if target.latency is None and not hw_widths:
        return None
    if alloc.example_inputs is None:
        raise ValueError("auto: a latency target or hw_widths needs example_inputs")
    opts = {"batch": cfg.latency_batch, "device": cfg.latency_device, "threads": cfg.latency_threads, "log": say}
    return LatencyModel.build(model, alloc.example_inputs, graph=graph, min_channels=alloc.min_channels,
                              max_ratio=alloc.max_ratio, seed=alloc.seed, **(opts | dict(cfg.latency_model or {})))


def _scorer(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], data: Any, cfg: AutoConfig,
            device: torch.device) -> tuple[Callable[[dict], float], str, list]:
    """(counts -> score, what the score is, calibration batches): validation top-1 after BatchNorm
    recalibration with data, else the magnitude proxy (with a warning)."""
    if data is None:
        warnings.warn("auto: no data given, so candidates are scored by a magnitude proxy (the kept share of each "
                      "group's criterion score), not by accuracy; pass data=<train loader>, val_data=<val loader>",
                      stacklevel=4)
        return magnitude_proxy(graph, scores), "magnitude proxy (no data)", []
    calib, val = split_data(data, cfg.val_data, cfg.calib_samples, cfg.val_samples)

    def score(counts: dict[str, int]) -> float:
        net = build_pruned(model, graph, counts, scores)
        recalibrate_bn(net, calib, device)
        r = evaluate(net, val, device)
        return r["top1"] - 1e-3 * r["loss"]  # ties in accuracy go to the lower loss

    return score, f"top-1 on {sum(len(b[0]) for b in val)} validation samples after BN recalibration", calib


def _finalists(model: nn.Module, graph: DependencyGraph, scores: dict[str, torch.Tensor], data: Any,
               cfg: AutoConfig, ranked: list[Candidate], start: list[float], calib: list, device: torch.device,
               say: Callable[[str], None]) -> tuple[Candidate, list[dict[str, Any]]]:
    """Stage 2: the few best, and the uniform-like start, each get a short fine-tune and a larger validation
    subset; the best after it wins. Returns (winner, per finalist its stage-1 and stage-2 scores)."""
    pool = ranked[:cfg.finalists] + [c for c in ranked[cfg.finalists:] if c.pref == start]
    batches = _batches(_train_of(data), cfg.finetune_steps)
    big_val = split_data(data, cfg.val_data, 0, cfg.final_val_samples)[1]
    stage2 = []
    for c in pool:
        net = build_pruned(model, graph, c.counts, scores)
        recalibrate_bn(net, calib, device)
        short_finetune(net, batches, device, cfg.finetune_lr)
        r = evaluate(net, big_val, device)
        stage2.append({"stage1": c.score, "score": r["top1"] - 1e-3 * r["loss"], "counts": c.counts})
        c.final = stage2[-1]["score"]
    best = max(pool, key=lambda c: c.final)
    say(f"auto: {len(pool)} finalists fine-tuned {cfg.finetune_steps} steps; best top-1 {best.final:.4f} "
        f"(stage-1 rank {ranked.index(best) + 1})")
    return best, stage2


def _summary(graph: DependencyGraph, target: Target, mode: str, ranked: list[Candidate], best: Candidate,
             stage2: list, project: Projector, measured: float | None, widths: dict, lm: LatencyModel | None,
             t0: float) -> dict[str, Any]:
    """What the search found (the policy's `info` and `report`)."""
    now, base = predict(graph, best.counts), predict(graph, {})
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
    return info
