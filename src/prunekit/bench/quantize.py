"""Suite `quantize`: pruning combined with int8, measured in one run.

Fashion-MNIST ResNet-20 (full width, briefly trained base) and all-MiniLM-L6-v2 classifying fortunes:
dense float32, dense int8, pruned float32 (each MAC target), pruned + int8 (post-training; and QAT for the
CNN), with top-1, ONNX file size and CPU latency at batch 1 and 64 in torch and onnxruntime. The latencies of
all variants of a model are taken in alternation (run by run), so machine load falls on all alike.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..measure.inputs import call_model, rebatch
from ..quantize.runtime import feed, session
from . import common, output
from .config import BenchConfig, opt_int, opt_positive
from .quantize_cnn import cnn_variants
from .quantize_text import text_variants
from .timing import _alternate
from .quantize_variants import Variant

NOT_READ = {"score_batches": "its pruned models score with l1, which reads no batches"}
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"archs": [("resnet20", 1.0)], "targets": [0.5, 0.25], "seeds": [0], "train_samples": 10000,
                "test_samples": 2000, "base_epochs": 3, "finetune_epochs": 1, "finetune_steps": 60,
                "finetune_lr": 0.02, "latency_runs": 20, "latency_batches": [1, 64], "threads": 1},
    "quick": {"latency_batches": [1, 8], "latency_runs": 2},
    "opts": {"calib_batches": 8, "qat_steps": 60, "qat_lr": 0.002, "round_to": 8, "transformer": True,
             "text_classes": ["computers", "politics", "science", "work"], "text_train": 160, "text_test": 100,
             "text_len": 48, "text_steps": 30, "text_lr": 1e-4},
    # quick: ResNet-20 at width 0.25 has 4-16 channels per stage, too few to round to multiples of 8
    "quick_opts": {"calib_batches": 2, "qat_steps": 2, "transformer": False, "round_to": 1},
}

COLUMNS: list[output.Column] = [
    ("model", lambda r: r["model"]),
    ("variant", lambda r: r["variant"]),
    ("MACs kept", lambda r: output.pct(r.get("macs_kept"), 0)),
    ("top-1", lambda r: output.pct(r.get("top1"), 2)),
    ("Δ vs dense fp32 (pts)", lambda r: output.num(r.get("delta_pts"), "+.2f")),
    ("ONNX bytes", lambda r: f"{r['size_bytes']:,}"),
    ("smaller", lambda r: output.num(r.get("size_ratio"), ".2f", "x")),
    ("torch b1 ms", lambda r: output.num(r.get("torch_b1"), ".3f")),
    ("torch b64 ms", lambda r: output.num(r.get("torch_b64"), ".2f")),
    ("ORT b1 ms", lambda r: output.num(r.get("ort_b1"), ".3f")),
    ("ORT b64 ms", lambda r: output.num(r.get("ort_b64"), ".2f")),
    ("speedup b64 vs torch fp32", lambda r: output.num(r.get("speedup_vs_torch"), ".2f", "x")),
    ("speedup b64 vs ORT fp32", lambda r: output.num(r.get("speedup_vs_ort"), ".2f", "x")),
]


def time_variants(variants: list[Variant], example: Any, batches: list[int], runs: int,
                  threads: int | None) -> dict[str, dict[str, float]]:
    """{variant: {"torch_b<B>": ms, "ort_b<B>": ms}}: every runtime of every variant, alternated run by run."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    out: dict[str, dict[str, float]] = {v.name: {} for v in variants}
    try:
        sessions = {v.name: session(v.onnx, threads) for v in variants if v.onnx is not None}
        for b in batches:
            x = rebatch(example, b)
            fns: dict[str, Callable[[], object]] = {}
            for v in variants:
                if v.torch_model is not None:
                    fns[f"{v.name}|torch_b{b}"] = lambda m=v.torch_model: call_model(m, x)
                if v.name in sessions:
                    s = sessions[v.name]
                    fns[f"{v.name}|ort_b{b}"] = lambda s=s, f=feed(s, x): s.run(None, f)
            with torch.inference_mode():
                medians = _alternate(fns, runs, warmup=2)
            for key, ms in medians.items():
                name, col = key.split("|")
                out[name][col] = ms
    finally:
        torch.set_num_threads(before)
    return out


def rows_for(model: str, variants: list[Variant], times: dict[str, dict[str, float]], big: int) -> list[dict]:
    """Table rows with deltas and ratios against the dense float32 variant (the first)."""
    dense = variants[0]
    dense_t = times[dense.name]
    dense_bytes = dense.onnx.stat().st_size
    rows = []
    for v in variants:
        t = times[v.name]
        size = v.onnx.stat().st_size if v.onnx is not None else int(v.info.get("size_bytes", 0))
        best = min((ms for k, ms in t.items() if k.endswith(f"_b{big}")), default=None)
        rows.append({"model": model, "variant": v.name, "macs_kept": v.macs_kept, "top1": v.top1,
                     "delta_pts": None if v.top1 is None else 100 * (v.top1 - dense.top1), "size_bytes": size,
                     "size_ratio": dense_bytes / size if size else None, "torch_b1": t.get("torch_b1"),
                     "torch_b64": t.get(f"torch_b{big}"), "ort_b1": t.get("ort_b1"), "ort_b64": t.get(f"ort_b{big}"),
                     "speedup_vs_torch": dense_t[f"torch_b{big}"] / best if best else None,
                     "speedup_vs_ort": dense_t[f"ort_b{big}"] / best if best else None, **v.info})
    return rows


def check_text_opts(opts: dict[str, Any]) -> None:
    """transformer true or false; with it, the MiniLM part's sizes (integers >= 1), its learning rate (> 0) and
    a non-empty list of fortunes categories, refused before the CNN part runs for minutes."""
    if not isinstance(opts["transformer"], bool):
        raise ValueError(f"quantize: --opt transformer={opts['transformer']!r}: give true or false")
    if not opts["transformer"]:
        return
    for key in ("text_train", "text_test", "text_len", "text_steps"):
        opt_int("quantize", opts, key)
    opt_positive("quantize", opts, "text_lr")
    classes = opts["text_classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"quantize: --opt text_classes={classes!r}: give a list of two or more fortunes categories")


def run(cfg: BenchConfig) -> dict[str, Any]:
    check_text_opts(cfg.opts)
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/quantize")
    table: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    big = max(cfg.latency_batches)
    with tempfile.TemporaryDirectory(prefix="prunekit-bench-quantize-") as tmp:
        for arch, width in cfg.archs:
            variants, example, base_info = cnn_variants(cfg, arch, width, Path(tmp) / arch)
            info[arch] = base_info
            common.log(f"{arch}: timing {len(variants)} variants in alternation")
            times = time_variants(variants, example, cfg.latency_batches, cfg.latency_runs, cfg.threads)
            table += rows_for(f"{arch} (width {width:g})", variants, times, big)
        if cfg.opts.get("transformer"):
            variants, example, text_info = text_variants(cfg, Path(tmp) / "minilm")
            info["minilm"] = text_info
            common.log(f"minilm: timing {len(variants)} variants in alternation")
            times = time_variants(variants, example, cfg.latency_batches, max(3, cfg.latency_runs // 2), cfg.threads)
            table += rows_for("all-MiniLM-L6-v2 + head", variants, times, big)
    notes = observations(table, big)
    intro = ("Pruning combined with int8 on CPU. Sizes are ONNX file bytes (float32 exports and int8 QDQ / "
             "dynamic-quantized files alike); latency is the median per forward pass of the whole batch with "
             f"{cfg.threads} thread(s), every variant of a model alternated run by run. onnxruntime int8 files "
             "have no torch latency; torchao int8 models no onnxruntime one, and their size is the bytes of "
             "their torch-serialised state_dict (measured in memory).")
    return output.write_suite(out, cfg, "Pruning + int8 quantization", intro, table, COLUMNS, table,
                              notes=notes, info=info, started=started)


def observations(table: list[dict[str, Any]], big: int) -> list[str]:
    """The goal (pruned 50% + int8 >= 3x faster than dense fp32 at the big batch, <= 1 point, >= 4x smaller)."""
    notes = []
    for model in dict.fromkeys(r["model"] for r in table):
        rows = [r for r in table if r["model"] == model]
        for r in rows:
            if "int8" not in r["variant"] or r.get("macs_kept") is None or abs(r["macs_kept"] - 0.5) > 0.1:
                continue
            met = (r["speedup_vs_torch"] or 0) >= 3 and (r["delta_pts"] or -99) >= -1 and (r["size_ratio"] or 0) >= 4
            notes.append(f"{model}, {r['variant']}: {r['speedup_vs_torch']:.2f}x faster than dense fp32 in torch and "
                         f"{r['speedup_vs_ort']:.2f}x than dense fp32 in onnxruntime at batch {big}, "
                         f"{r['delta_pts']:+.2f} pts, {r['size_ratio']:.2f}x smaller: "
                         f"goal {'met' if met else 'not met'}.")
    return notes


def int8_size_section(source: str | Path = "benchmarks/results/quantize") -> str | None:
    """Markdown lines stating the pruned + int8 sizes of the quantize suite (for the compression suite), or
    None when that suite has not been run."""
    import json
    path = Path(source) / "results.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text()).get("results", [])
    lines = [f"From `{path}` (structured pruning + int8, ONNX file bytes (torchao rows: torch-serialised "
             "state bytes), ratio = dense float32 ONNX bytes / file bytes; a different model family and storage "
             "than Deep Compression's sparse, weight-shared, Huffman-coded files):", ""]
    for r in rows:
        if "int8" in r["variant"] and r.get("size_ratio"):
            lines.append(f"- {r['model']}, {r['variant']}: {r['size_bytes']:,} B, {r['size_ratio']:.2f}x smaller "
                         f"than dense float32, {output.pct(r.get('top1'), 2)} top-1 ({r['delta_pts']:+.2f} pts)")
    return "\n".join(lines)
