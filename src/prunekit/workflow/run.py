"""`run_workflow(config)`: the whole story of one run, for the CLI (`prunekit prune`, `prunekit demo`), the
benchmarks and library users alike: base (train or load) -> analysis (optional) -> prune with a registered
method -> recover -> quantize (optional) -> measure before and after -> save the model and the plan ->
report.json / report.md / plots."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import json_data
from ..graph.plan import PruningPlan
from ..probing import trace
from ..io import PLANS_ATTR, arch_of, save as save_model_file
from ..methods import METHODS, list_methods, run_method
from ..methods.common import default_inputs
from ..models import spec_of
from ..planning import missed_targets
from ..policies import Target
from ..report import (complete_report, plot_before_after, plot_compression_stages, plot_layer_widths,
                      plot_training_curve, write_report)
from ..report.analysis import analyze_model, plot_analysis
from ..train import evaluate, seed_everything
from ..utils import atomic_write
from . import compression
from .base import RunData, data_description, get_base, given_base, load_data
from ..quantize.pipeline import SCHEME as INT8, int8_step
from .config import QUANTIZERS, SCORED_METHODS, WorkflowConfig, register_quantizer
from .models import ModelSourceError, example_input, measure_model
from .outputs import prepare_output_dir

register_quantizer(INT8, int8_step)  # the int8 step prunekit ships


@dataclass
class WorkflowResult:
    """What a run produced. `report` is the report.json object (also written to `out` when one was given)."""

    config: WorkflowConfig
    model: nn.Module                      # the pruned (recovered, quantized) model, on the CPU
    plan: PruningPlan
    before: dict[str, Any]                # Metrics of the base (report.json schema)
    after: dict[str, Any]                 # Metrics of the result
    report: dict[str, Any]
    out: Path | None = None
    analysis: list[dict[str, Any]] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    method: Any = None                    # the method's MethodResult (history, timings, extras)


def measure(model: nn.Module, example: torch.Tensor, test_loader, latency_runs: int, device=None) -> dict[str, Any]:
    """Params, MACs, size, latency (batches 1 and 64 unless latency_runs is 0) and test accuracy."""
    m = measure_model(model.cpu().eval(), example, latency_runs, batches=(1, 64) if latency_runs else ())
    if test_loader is None:  # loaders given without a test split: no accuracy to report
        m.update(top1=None, top5=None, loss=None)
        return m
    scores = evaluate(model, test_loader, device)
    model.cpu()
    m.update(top1=scores["top1"], top5=scores["top5"], loss=scores["loss"])
    return m


def method_kwargs(cfg: WorkflowConfig, log: Callable[[str], None] | None) -> dict[str, Any]:
    """The keyword arguments of the registered method for this config (its options first, the config wins)."""
    p, r = cfg.prune, cfg.recover
    kw: dict[str, Any] = dict(p.options)
    goal = p.goal()
    if "ratio" in goal:
        kw["ratio"] = goal["ratio"]
    else:
        kw["target"] = Target(**goal)
    if p.criterion:
        kw["criterion"] = p.criterion
    if p.policy:
        kw["policy"] = p.policy
    kw.update(finetune_epochs=r.finetune_epochs, lr=r.lr, distill=r.distill, temperature=r.temperature,
              distill_weight=r.distill_weight, from_scratch=r.from_scratch, scratch_epochs=r.scratch_epochs,
              max_steps_per_epoch=cfg.max_steps_per_epoch, seed=cfg.seed, min_channels=p.min_channels,
              max_ratio=p.max_ratio, device=cfg.device)
    trace_kw = trace_options(cfg)
    if trace_kw:
        kw["trace_kw"] = {**trace_kw, **kw.get("trace_kw", {})}
    if log is not None:
        kw["log"] = log  # one line per fine-tuning epoch
    if p.method in SCORED_METHODS:
        kw.setdefault("score_batches", p.score_batches)
    if not p.strict:
        kw["strict"] = False  # best effort: an unreachable target gives the most pruned plan, with a warning
    return kw


def trace_options(cfg: WorkflowConfig) -> dict[str, Any]:
    """pk.trace keywords of the config: modules left alone, whole heads, channel multiples."""
    p = cfg.prune
    kw: dict[str, Any] = {}
    if p.ignore:
        kw["ignore"] = list(p.ignore)
    if p.heads:
        kw["heads"] = True
    if p.round_to > 1:
        kw["round_to"] = p.round_to
    return kw


def _quantize(cfg: WorkflowConfig, model: nn.Module, example: torch.Tensor, data: RunData, out: Path | None = None
              ) -> tuple[nn.Module, dict[str, Any] | None]:
    if cfg.quantize is None:
        return model, None
    # keywords beyond (model, example, calibration loader, config): where the int8 files go, what to score
    return QUANTIZERS[cfg.quantize.scheme](model, example, data.loaders.train, cfg.quantize, out=out,
                                           test_loader=data.loaders.test, latency_runs=cfg.latency_runs)


def _example(given: Any, data: RunData, kw: dict[str, Any]) -> Any:
    """The inputs the run traces and measures with: the caller's, else a seeded image batch of the data set's
    shape, else (loaders given in memory) the first sample of the first training batch."""
    if given is not None:
        return given
    if data.info is not None:
        return example_input(kw.get("in_channels", data.info.in_channels), data.info.image_size)
    return default_inputs(data.loaders.train)


def _check_data_free(cfg: WorkflowConfig, example_inputs: Any) -> None:
    """A run without training data reads none: oneshot, no fine-tuning, and example inputs to trace with (a
    data-driven criterion is refused by the criterion itself, naming it)."""
    r = cfg.recover
    if example_inputs is None:
        raise ValueError("run_workflow: without a training loader, pass example_inputs to trace the model with")
    if cfg.prune.method != "oneshot":
        raise ValueError(f"run_workflow: method {cfg.prune.method!r} trains while it prunes; without a training "
                         "loader only 'oneshot' runs")
    if r.finetune_epochs > 0 or r.from_scratch:
        raise ValueError(f"run_workflow: recovery needs a training loader (finetune_epochs={r.finetune_epochs}, "
                         f"from_scratch={r.from_scratch}); set finetune_epochs=0 for a run without data")


def _samples(loader: Any) -> int | None:
    """How many samples a loader holds (None when it cannot tell: a plain iterable of batches)."""
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _save(out: Path, model: nn.Module, plan: PruningPlan, spec, report: dict[str, Any],
          base_widths: dict[str, int], pruned_widths: dict[str, int], method: str,
          history: list[dict[str, Any]], input_shape: list[int] | None) -> None:
    """model.safetensors (with the plan on the original architecture and the (C, H, W) input it was measured
    on, which export, quantize and analyze read), plan.json, plots, report.json/.md."""
    recorded = getattr(model, PLANS_ATTR, None)
    kwargs = {"arch": spec.to_dict()} if spec is not None else {}
    saved = save_model_file(model, out / "model.safetensors", plan=None if recorded else plan, overwrite=True,
                            extra={"input_shape": input_shape} if input_shape else None, **kwargs)
    report["extra"]["saved"] = str(saved)
    atomic_write(out / "plan.json", plan.to_json(indent=1) + "\n", overwrite=True)
    plots = [plot_before_after(report, out / "before_after.png").name,
             plot_layer_widths(base_widths, {method: pruned_widths}, out / "layer_widths.png").name]
    if history:
        plots.append(plot_training_curve(history, out / "finetune_curve.png").name)
    report["plots"] = plots
    write_report(out, report)


def _check_before_work(cfg: WorkflowConfig) -> Path | None:
    """Everything that can be refused without training: the method and its options, the quantization scheme,
    the base path, the output folder (checked and created). Returns the output folder or None."""
    if cfg.prune.method == compression.METHOD:
        compression.check_config(cfg)
    elif cfg.prune.method not in list_methods():
        raise ValueError(f"unknown method {cfg.prune.method!r}; choose one of: {', '.join(workflow_methods())}")
    else:
        resolve = getattr(METHODS.config_type(cfg.prune.method), "resolve", None)
        if resolve is not None:  # unknown keys and bad values of the method's options (MethodConfig types)
            resolve(f"{cfg.prune.method}()", None, method_kwargs(cfg, None))
    if cfg.quantize is not None and cfg.quantize.scheme not in QUANTIZERS:
        raise ValueError(f"unknown quantization scheme {cfg.quantize.scheme!r}; registered: "
                         f"{', '.join(sorted(QUANTIZERS)) or 'none'}")
    if cfg.base.path and not Path(cfg.base.path).exists():
        raise ModelSourceError(f"no such file or folder: {cfg.base.path}")
    if not cfg.out:
        return None
    return prepare_output_dir(cfg.out, overwrite=cfg.overwrite, protect=[cfg.base.path] if cfg.base.path else [],
                              flag="out (--out)", create=False)


def check_workflow(config: WorkflowConfig) -> None:
    """Refuse `config` the way `run_workflow` would before any training: an unknown method, a bad option of
    the method (its config type's checks), an unknown quantization scheme, a missing base path or an output
    folder in the way. Callers that queue many runs (the benchmark suites) check them all before the first."""
    _check_before_work(config)


def _method_description(cfg: WorkflowConfig, rep: Any) -> dict[str, Any]:
    """The "method" block of report.json."""
    p, r = cfg.prune, cfg.recover
    return {"name": p.method, **{k: rep.get(k) for k in ("criterion", "policy")}, "target": dict(p.target),
            "ratio": p.ratio, "finetune_epochs": r.finetune_epochs, "finetune_lr": r.lr, "distill": r.distill,
            "from_scratch": r.from_scratch, "extra": json_data(p.options)}


def run_workflow(config: WorkflowConfig, *, data: RunData | None = None, base_model: nn.Module | None = None,
                 example_inputs: Any = None, log: Callable[[str], None] = print) -> WorkflowResult:
    """Run the whole story for `config`; returns the result (and writes it to `config.out` when set).

    Args:
        config: the validated run configuration (recorded in report.json under "config").
        data: loaders to use instead of building them from `config.data` (the demo's fallback data set).
        base_model: a base already in memory, pruned in place instead of loading `config.base.path` or
            training one (the benchmark suites' shared bases): a registry model of `config.model.name`, or,
            with `example_inputs`, any module (named in the report by `config.model.name`).
        example_inputs: what to trace and measure the model with (a tensor, a tuple of positional arguments
            or a dict of keyword arguments), for models that are not image classifiers of the registry. Default:
            a random image batch of the data set's shape, or with `RunData.given` loaders the first sample of
            the first training batch.
        log: where progress lines go.

    Returns:
        WorkflowResult with the pruned model, the plan, the before/after metrics and the report.

    Raises:
        OutputExistsError / OutputConflictError: `config.out` holds an earlier run (without overwrite) or
            overlaps the base's folder; checked before any work.
        ValueError: a base of another architecture than `config.model.name`, an unknown method, given loaders
            without a base_model, an output folder for a model prunekit cannot save (it must be able to rebuild
            it: a registry, torchvision, timm or transformers model), ...

    Example:
        >>> from prunekit.workflow import DataConfig, ModelConfig, PruneConfig, WorkflowConfig, run_workflow
        >>> res = run_workflow(WorkflowConfig(model=ModelConfig("lenet5"), data=DataConfig("digits"),
        ...                                   prune=PruneConfig(ratio=0.3), out="runs/lenet-30"))
        >>> res.after["macs"] / res.before["macs"]

        Any module on its own data (here a two-input text classifier):
        >>> res = run_workflow(WorkflowConfig(model=ModelConfig("my-classifier"),
        ...                                   prune=PruneConfig(target={"macs": 0.5}, heads=True)),
        ...                    data=RunData.given(train_loader, test_loader), base_model=classifier,
        ...                    example_inputs=(input_ids[:1], attention_mask[:1]))
    """
    t_start = time.perf_counter()
    cfg = config
    out = _check_before_work(cfg)
    timings: dict[str, float] = {}
    data = data if data is not None else load_data(cfg.data, cfg.seed, cfg.model.input_size)
    if data.info is None and base_model is None:
        raise ValueError("run_workflow: loaders given in memory (RunData.given) need the model to prune as "
                         "base_model; a base is trained or loaded only on a data set of the registry")
    if data.loaders.train is None:
        _check_data_free(cfg, example_inputs)
    if base_model is None:
        model, name, kw, base_info = get_base(cfg, data, log)
    else:
        model, name, kw, base_info = given_base(cfg, base_model, any_module=example_inputs is not None)
    if out is not None and spec_of(model) is None and arch_of(model) is None:
        raise ValueError(f"run_workflow: cannot save a {type(model).__name__} to {out} (prunekit could not "
                         "rebuild it on load); run it with out=None and save the result's model yourself")
    timings["base"] = base_info["time_s"]
    example = _example(example_inputs, data, kw)
    t0 = time.perf_counter()
    before = measure(model, example, data.loaders.test, cfg.latency_runs, cfg.device)
    timings["measure_before"] = time.perf_counter() - t0
    analysis = None
    if cfg.analyze:
        t0 = time.perf_counter()
        analysis = analyze_model(model.eval(), example)
        if out is not None:
            plot_analysis(analysis, out / "analyze.png")
        timings["analyze"] = time.perf_counter() - t0
    # the method sees the same RNG and data order whether the base was trained here or reused from the cache
    seed_everything(cfg.seed)
    data.reseed(cfg.seed)
    prune_step = _compress if cfg.prune.method == compression.METHOD else _prune_channels
    step = prune_step(cfg, model, data, example, out, log if cfg.progress else None)
    timings.update(step.timings)
    t0 = time.perf_counter()
    after = measure(step.model, example, data.loaders.test, cfg.latency_runs, cfg.device)
    after.update(step.after)
    timings["measure_after"] = time.perf_counter() - t0
    report = {"model": {"name": name, **kw},
              "data": {**(data.description or data_description(cfg)), "train": _samples(data.loaders.train),
                       "test": _samples(data.loaders.test)},
              "data_read": data.read, "config": cfg.to_dict(), "method": step.description,
              "metrics": {"before": before, "after": after}, "timings": timings, "history": step.history,
              "extra": {"base": {k: v for k, v in base_info.items() if k != "history"}, "saved": None,
                        "analysis": analysis, **_target_block(step.plan, cfg), **step.extra}}
    quant_info = step.extra.get("quantize")
    if quant_info and isinstance(quant_info.get("metrics"), dict):  # the int8 row of the before/after table
        extra_metrics = quant_info.pop("metrics")
        report["metrics"]["int8"] = extra_metrics.get("int8")
        if extra_metrics.get("after_latency_by_runtime"):
            after["latency_by_runtime"] = extra_metrics["after_latency_by_runtime"]
    timings["total"] = time.perf_counter() - t_start
    report = complete_report(report)  # summary, time, versions, machine: what report.json holds
    if out is not None:
        step.save(out, report)
    return WorkflowResult(config=cfg, model=step.model.cpu(), plan=step.plan, before=before, after=after,
                          report=report, out=out, analysis=analysis, timings=timings, method=step.method)


def _target_block(plan: Any, cfg: WorkflowConfig) -> dict[str, Any]:
    """{"target": {asked, planned, met, strict}} for a run with a target: the fractions asked for, those the
    plan keeps (the planner's counts; measured ones are in metrics), and whether each is within the planner's
    tolerance; a run accepted with strict=False (--best-effort) that missed says so here and in report.md."""
    meta = getattr(plan, "meta", None) or {}
    asked, planned = meta.get("target") or {}, meta.get("achieved") or {}
    if not asked or not planned:
        return {}
    met = not missed_targets(asked, planned)
    return {"target": {"asked": dict(asked), "planned": dict(planned), "met": met, "strict": cfg.prune.strict}}


@dataclass
class _Step:
    """What the prune step of a run produced, and how its outputs are written."""

    model: nn.Module
    plan: PruningPlan
    method: Any                                  # MethodResult, or DeepCompressionResult
    description: dict[str, Any]                  # the "method" block of report.json
    history: list[dict[str, Any]]
    extra: dict[str, Any]                        # entries of report.json's "extra"
    timings: dict[str, float]
    save: Callable[[Path, dict[str, Any]], None]
    after: dict[str, Any] = field(default_factory=dict)  # metrics that override the measured ones


def _prune_channels(cfg: WorkflowConfig, model: nn.Module, data: RunData, example: Any, out: Path | None,
                    log: Callable[[str], None] | None) -> _Step:
    """A registered structured method, then the optional quantizer."""
    mkw = method_kwargs(cfg, log)
    base_widths = {g.name: g.size for g in trace(model, example, **mkw.get("trace_kw", {})).prunable_groups()}
    spec = spec_of(model)
    t0 = time.perf_counter()
    pruned, rep = run_method(cfg.prune.method, model, data.loaders.train, data.loaders.val, example, **mkw)
    timings = {"method": time.perf_counter() - t0, **{f"method.{k}": v for k, v in rep.timings.items()}}
    pruned, quant_info = _quantize(cfg, pruned, example, data, out)
    plan = rep.plan
    pruned_widths = {**base_widths, **{d.name: len(d.kept) for d in plan.decisions}}
    hist = rep.history.get("finetune") or rep.history.get("scratch") or []
    extra = {"widths": pruned_widths, "base_widths": base_widths, "quantize": quant_info,
             "method_report": {k: v for k, v in rep.to_dict().items() if k not in ("plan", "history", "timings")}}

    def save(folder: Path, report: dict[str, Any]) -> None:
        _save(folder, pruned, plan, spec, report, base_widths, pruned_widths, cfg.prune.method, hist,
              input_shape=list(example.shape[1:]) if isinstance(example, torch.Tensor) else None)

    return _Step(pruned, plan, rep, _method_description(cfg, rep), hist, extra, timings, save)


def _compress(cfg: WorkflowConfig, model: nn.Module, data: RunData, example: Any, out: Path | None,
              log: Callable[[str], None] | None) -> _Step:
    """Deep Compression (prunekit.workflow.compression): the model read back from <out>/model.pkz; its size
    in the after metrics is that file's bytes."""
    t0 = time.perf_counter()
    res = compression.compress(cfg, model, data.loaders, out, log)
    timings = {"method": time.perf_counter() - t0}
    p, r = cfg.prune, cfg.recover
    c = res.notes.get("config") or {}
    description = {"name": p.method, "criterion": c.get("criterion"), "policy": None, "target": {},
                   "ratio": p.ratio, "finetune_epochs": r.finetune_epochs, "finetune_lr": r.lr, "distill": False,
                   "from_scratch": False, "extra": json_data(p.options)}
    hist = res.history.get("retrain") or []
    final = res.stage("huffman")
    plan = PruningPlan(meta={"method": p.method, "note": "single weights zeroed and shared; no channel removed"})

    def save(folder: Path, report: dict[str, Any]) -> None:
        report["extra"]["saved"] = str(folder / compression.FILE)
        plots = [plot_before_after(report, folder / "before_after.png").name,
                 plot_compression_stages([{"model": report["model"]["name"], "stages": report["extra"][
                     "deep_compression"]["stages"]}], folder / "compression_stages.png").name]
        if hist:
            plots.append(plot_training_curve(hist, folder / "finetune_curve.png").name)
        report["plots"] = plots
        write_report(folder, report)

    return _Step(res.model, plan, res, description, hist, {"deep_compression": compression.report_extra(res)},
                 timings, save, after={"size_bytes": final.bytes})


def workflow_methods() -> list[str]:
    """Every method run_workflow runs: the registered structured methods and deep_compression."""
    return sorted([*list_methods(), compression.METHOD])
