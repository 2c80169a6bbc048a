"""What every suite shares: the data, the cached base per architecture (the workflow's base step), running a
method on a fresh copy of the base with the shared budget, measuring the result, and summarising seeds."""
from __future__ import annotations

import copy
import itertools
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data import Loaders, dataset_info, get_dataset, make_loader
from ..probing import trace
from ..measure import count
from ..models import create
from ..data.provenance import data_read
from ..methods import Recovery
from ..train import TrainConfig, Trainer
from ..train import evaluate as _evaluate
from ..workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, RecoverConfig, RunData, WorkflowConfig,
                        WorkflowResult, run_workflow, train_base)
from ..workflow.config import reads_score_batches
from .config import BenchConfig
from .timing import paired_latency


# Bases trained once and committed with the sources (benchmarks/bases/ of a source checkout): read in place,
# read-only, when the cache has no entry of the same key. Absent from an installed wheel, where nothing is found.
COMMITTED_BASES = Path(__file__).resolve().parents[3] / "benchmarks" / "bases"


def default_cache() -> Path:
    """~/.cache/prunekit/bench (or $XDG_CACHE_HOME/prunekit/bench): trained bases, reused by every suite."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunekit" / "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Data:
    """The data every method of a suite sees: datasets (fresh seeded loaders per run), a test loader."""

    info: Any
    train_ds: Any
    test_loader: Any
    batch_size: int

    def train_loader(self, seed: int):
        """A new shuffled loader: every run sees the same batch order for the same seed, whatever ran before."""
        return make_loader(self.train_ds, self.batch_size, shuffle=True, seed=seed)

    def example(self) -> torch.Tensor:
        h, w = self.info.image_size
        return torch.randn(1, self.info.in_channels, h, w, generator=torch.Generator().manual_seed(0))


def load_data(cfg: BenchConfig) -> Data:
    """Seeded subsets: `train_samples` training images (no validation split is used), `test_samples` test ones."""
    info = dataset_info(cfg.dataset, cfg.data_dir)
    kw = dict(data_dir=cfg.data_dir, seed=0)
    train = get_dataset(cfg.dataset, split="train", subset=cfg.train_samples, **kw)
    test = get_dataset(cfg.dataset, split="test", subset=cfg.test_samples, **kw)
    return Data(info, train, make_loader(test, 500), cfg.batch_size)


def get_base(cfg: BenchConfig, data: Data, arch: str, width: float) -> tuple[nn.Module, dict[str, Any]]:
    """The trained base of `arch`: from the cache (keyed by model, data subset and training settings), else
    from the same key under `COMMITTED_BASES`, else trained once with seed 0 and cached, so that every method and
    every suite starts from the same weights."""
    kw = {"num_classes": data.info.num_classes, "in_channels": data.info.in_channels, "width": width}
    desc = {"dataset": cfg.dataset, "train_samples": cfg.train_samples, "batch_size": cfg.batch_size,
            "bench": 1}
    loaders = Loaders(data.train_loader(0), None, data.test_loader)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache()
    model, info = train_base(arch, kw, loaders, desc, cfg.base_epochs, cfg.base_lr, 0, cache_dir=str(cache),
                              max_steps=cfg.base_max_steps, device="cpu", progress=False, log=log,
                              committed=[COMMITTED_BASES])
    info = {k: v for k, v in info.items() if k != "history"}
    return model.eval(), info


def evaluate(model: nn.Module, data: Data) -> float:
    return float(_evaluate(model, data.test_loader, "cpu")["top1"])


def counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    c = count(model, example)
    return {"params": int(c.params), "macs": int(c.macs)}


def widths(model: nn.Module, example: torch.Tensor, ref: Any = None, prunable_only: bool = False) -> dict[str, int]:
    """Channels per channel group. With `ref` (the base's DependencyGraph) they are read off the model's
    tensors, group by group of the base (so torch-pruning's models are read alike, and a group pruned to a
    single channel, which the tracer no longer reports as a group, keeps its name); else the model is traced."""
    if ref is None:
        graph = trace(model, example)
        return {g.name: g.size for g in (graph.prunable_groups() if prunable_only else graph.groups)}
    state = model.state_dict()
    out = {}
    for g in ref.groups:
        m = next((m for m in g.members if m.role == "out" and m.key in state), None)
        if m is not None and m.index and (not prunable_only or g.prunable):
            out[g.name] = int(state[m.key].shape[m.dim]) // max(1, len(m.index[0]))
    return out


def recovery_kwargs(cfg: BenchConfig, seed: int, **over: Any) -> dict[str, Any]:
    """The shared fine-tuning budget, as method keyword arguments."""
    kw = {"finetune_epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr, "max_steps_per_epoch": cfg.finetune_steps,
          "seed": seed, "device": "cpu", "train_config": TrainConfig(progress=False, verbose=False)}
    kw.update(over)
    return kw


def workflow_config(cfg: BenchConfig, arch: str, width: float, method: str, seed: int, target: float, *,
                    criterion: str | None = None, policy: str | None = None, finetune_epochs: int | None = None,
                    max_steps_per_epoch: int | None = None, from_scratch: bool = False,
                    score_batches: int | None = None, round_to: int = 1,
                    options: dict[str, Any] | None = None) -> WorkflowConfig:
    """The WorkflowConfig of one suite row: `method` toward `target` (fraction of MACs kept) on the suite's
    base and data, recovered with the shared budget (finetune_epochs / max_steps_per_epoch override it for
    rows that get more or fewer optimizer steps). round_to: channel multiples. `options`: the method's own
    keywords. score_batches (else the suite's) is the ranking pass of the rows whose method and criterion
    read one (data-driven criteria of oneshot, iterative and srr); other rows leave PruneConfig's default,
    which they do not read either (PruneConfig refuses a changed value there)."""
    crit = criterion or (options or {}).get("criterion")
    scored = {"score_batches": _score_batches(cfg, score_batches)} if reads_score_batches(method, crit) else {}
    return WorkflowConfig(
        model=ModelConfig(arch, width=width),
        data=DataConfig(cfg.dataset, data_dir=cfg.data_dir, train_subset=cfg.train_samples,
                        test_subset=cfg.test_samples, batch_size=cfg.batch_size),
        base=BaseConfig(epochs=cfg.base_epochs, lr=cfg.base_lr, cache_dir=cfg.cache_dir),
        prune=PruneConfig(method=method, criterion=criterion, policy=policy, target={"macs": target},
                          round_to=round_to, **scored,
                          options={"train_config": TrainConfig(progress=False, verbose=False), **(options or {})}),
        recover=RecoverConfig(finetune_epochs=cfg.finetune_epochs if finetune_epochs is None else finetune_epochs,
                              lr=cfg.finetune_lr, from_scratch=from_scratch),
        seed=seed, device="cpu", latency_runs=0, progress=False,
        max_steps_per_epoch=cfg.finetune_steps if max_steps_per_epoch is None else max_steps_per_epoch)


def _score_batches(cfg: BenchConfig, given: int | None) -> int:
    n = cfg.score_batches if given is None else given
    if not n:
        raise ValueError("score_batches 0 (the whole training set): pass ranking_batches(cfg, data) as score_batches")
    return int(n)


def ranking_batches(cfg: BenchConfig, data: Data) -> int:
    """Batches per ranking pass of data-driven criteria: cfg.score_batches, 0 meaning the whole training set."""
    return int(cfg.score_batches) or len(data.train_loader(0))


def run_row(base: nn.Module, data: Data, wcfg: WorkflowConfig) -> tuple[nn.Module, Any, WorkflowResult]:
    """prune -> recover -> measure through `run_workflow` on a fresh copy of the suite's base (batch order
    seeded by the config's seed, whatever ran before); returns (pruned model, its MethodResult, the result)."""
    loaders = Loaders(data.train_loader(wcfg.seed), None, data.test_loader)
    run_data = RunData(data.info, loaders, data_read(wcfg.data.dataset, wcfg.data.data_dir))
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_workflow(wcfg, data=run_data, base_model=copy.deepcopy(base), log=log)
    # process CPU seconds: with one torch thread and in-process data loading, the row's compute, unaffected by
    # other jobs' time slices or by the job being paused (wall clock counts both)
    res.method.timings["cpu"] = time.process_time() - c0
    res.method.timings["wall"] = time.perf_counter() - t0
    return res.model.cpu().eval(), res.method, res


def finetune(model: nn.Module, data: Data, cfg: BenchConfig, seed: int) -> dict[str, float]:
    """Fine-tune a model pruned outside prunekit (the torch-pruning peer) with the shared budget: the Trainer
    run a method's recovery makes (same TrainConfig, batch order and seed)."""
    rec = Recovery(**recovery_kwargs(cfg, seed))
    tcfg = rec.config(rec.finetune_epochs, rec.lr)
    t0 = time.perf_counter()
    if tcfg.epochs > 0:
        Trainer(model.train(), data.train_loader(seed), None, tcfg, device=rec.device, log=rec.log).fit()
    return {"finetune": time.perf_counter() - t0}


def measure_row(model: nn.Module, data: Data, base: dict[str, Any], cfg: BenchConfig,
                dense: nn.Module | None = None, result: WorkflowResult | None = None) -> dict[str, Any]:
    """Accuracy, MACs and parameters kept, channels per group and (with `dense`) the measured CPU speedup at
    batch 64 (paired timing, see timing.paired_latency). `base`: the entry of prepare_base. With `result`
    (the row's WorkflowResult) accuracy, MACs and parameters are the workflow's measurements."""
    ex = data.example()
    if result is not None:
        top1, c = float(result.after["top1"]), {"macs": int(result.after["macs"]), "params": int(result.after["params"])}
    else:
        top1, c = evaluate(model, data), counts(model, ex)
    row: dict[str, Any] = {"top1": top1, "macs": c["macs"], "params": c["params"],
                           "macs_kept": c["macs"] / base["macs"], "params_kept": c["params"] / base["params"],
                           "widths": widths(model, ex, ref=base.get("graph"))}
    if dense is not None:
        b = max(cfg.latency_batches)
        lat = paired_latency({"dense": dense, "pruned": model}, ex, b, cfg.latency_runs, threads=cfg.threads)
        row.update(latency_ms=lat["pruned"], dense_latency_ms=lat["dense"], latency_batch=b,
                   speedup=lat["dense"] / lat["pruned"])
    return row


def mean_spread(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation; 0 for a single value)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(runs: list[dict[str, Any]], keys: tuple[str, ...], fields: tuple[str, ...],
              order: Callable[[dict], Any] | None = None) -> list[dict[str, Any]]:
    """One row per distinct `keys` tuple: each of `fields` as its mean over seeds (and `<field>_std`), n_seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    rows = []
    for key, rs in groups.items():
        row = dict(zip(keys, key))
        row["n_seeds"] = len(rs)
        for f in fields:
            m, s = mean_spread([r.get(f) for r in rs])
            row[f] = m
            row[f"{f}_std"] = s
        rows.append(row)
    return sorted(rows, key=order) if order else rows


def set_threads(cfg: BenchConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))


def prepare_base(cfg: BenchConfig, data: Data, arch: str, width: float) -> tuple[nn.Module, dict[str, Any]]:
    """(trained base, its entry for the results: width, top1, params, macs, widths (prunable groups), its
    traced graph (not written out), training info)."""
    ex = data.example()
    base, info = get_base(cfg, data, arch, width)
    c = counts(base, ex)
    graph = trace(base, ex)
    entry = {"width": width, "top1": evaluate(base, data), **c,
             "widths": {g.name: g.size for g in graph.prunable_groups()}, "graph": graph, "train": info}
    log(f"{arch} (width {width}): base top-1 {100 * entry['top1']:.2f}%, {c['macs']:,} MACs, {c['params']:,} params")
    return base, entry


def resumed_base(cfg: BenchConfig, data: Data, out: Path, arch: str, width: float) -> dict[str, Any] | None:
    """On --resume, the entry of a base whose rows are all finished, without its trained weights: the top-1,
    counts and training record that `out`/results.json holds for it, its group widths traced from an untrained
    model of the same architecture (widths do not depend on weights). None when not resuming or when nothing
    usable is recorded (the caller then trains or loads the base); an error when the record contradicts the
    architecture (other MAC or parameter counts)."""
    path = Path(out) / "results.json"
    if not cfg.resume or not path.is_file():
        return None
    rec = (json.loads(path.read_text()).get("info") or {}).get("bases", {}).get(arch)
    if not rec or rec.get("width") != width or not {"top1", "macs", "params", "train"} <= set(rec):
        return None
    ex = data.example()
    model = create(arch, num_classes=data.info.num_classes, in_channels=data.info.in_channels, width=width).eval()
    c = counts(model, ex)
    if (c["macs"], c["params"]) != (rec["macs"], rec["params"]):
        raise ValueError(f"{path}: its {arch} base has {rec['macs']:,} MACs and {rec['params']:,} params, this "
                         f"{arch} (width {width:g}) {c['macs']:,} and {c['params']:,}; resume into a fresh --out")
    graph = trace(model, ex)
    log(f"{arch} (width {width:g}): every row finished; base entry read from {path} "
        f"(top-1 {100 * rec['top1']:.2f}%), not retrained")
    return {**rec, "widths": {g.name: g.size for g in graph.prunable_groups()}, "graph": graph,
            "train": {**rec["train"], "entry_from": str(path)}}


def finished_base(cfg: BenchConfig, data: Data, rows: Any, out: Path, arch: str, width: float,
                  methods: list[str]) -> dict[str, Any] | None:
    """The recorded entry of `arch`'s base (`resumed_base`) when `rows` holds every row of it over the seeds,
    targets and `methods`: nothing is left to run on that base, so it is neither trained nor loaded. Else None."""
    done = all(rows.done(arch=arch, seed=s, target=t, method=m) is not None
               for s, t, m in itertools.product(cfg.seeds, cfg.targets, methods))
    return resumed_base(cfg, data, out, arch, width) if done else None


def bases_intro(bases: dict[str, dict[str, Any]]) -> str:
    return "Bases: " + "; ".join(f"{a} (width {b['width']:g}) {100 * b['top1']:.2f}%, {b['macs'] / 1e6:.2f}M MACs, "
                                 f"{b['params'] / 1e3:.1f}K params" for a, b in bases.items()) + "."


def bases_info(bases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"bases": {a: {k: v for k, v in b.items() if k not in ("widths", "graph")} for a, b in bases.items()}}


def progress_note(cfg: BenchConfig, runs: list[dict[str, Any]], per_setting: int) -> str:
    """A sentence for a suite still under way: rows finished of the rows planned (empty when all are done)."""
    planned = len(cfg.archs) * len(cfg.targets) * len(cfg.seeds) * per_setting
    if len(runs) >= planned:
        return ""
    return (f" **Partial**: {len(runs)} of {planned} runs finished; the rest continue with the command below "
            "plus `--resume`.")
