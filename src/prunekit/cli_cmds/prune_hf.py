"""`prunekit prune --model hf:<folder or package>`: the flags of the calibration-based transformer methods
(magnitude, wanda, sparsegpt, flap, depth), parsed into prunekit.transformers.workflow.HFPruneConfig."""
from __future__ import annotations

import argparse
from typing import Any

from ..transformers.workflow import HFPruneConfig, run_hf_prune
from ..utils import argtypes as T


def add_hf_prune_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hf: models (magnitude, wanda, sparsegpt, flap, depth)")
    g.add_argument("--sparsity", type=T.fraction, default=None, help="unstructured sparsity in [0, 1) (default 0.5)")
    g.add_argument("--nm", default=None, metavar="N:M", help="keep N of every M weights, e.g. 2:4")
    g.add_argument("--remove-blocks", type=T.positive_int, default=None, help="blocks removed by --method depth")
    g.add_argument("--calib-samples", type=T.positive_int, default=128, help="calibration windows")
    g.add_argument("--seq-len", type=T.positive_int, default=64, help="tokens per calibration window")
    g.add_argument("--heldout", type=T.positive_int, default=256, help="held-out sentences / windows for metrics")
    g.add_argument("--text", default="fortunes", help="fortunes, fortunes:<dir> or a folder of .txt files")
    g.add_argument("--distill-steps", type=T.nonneg_int, default=0, help="distillation steps after pruning")
    g.add_argument("--lora", action="store_true", help="distil LoRA adapters (merged) instead of all weights")


def hf_only_flags(args: argparse.Namespace, defaults: dict[str, Any]) -> list[str]:
    """The hf: model flags set (on the command line or in a recipe) to something else than their default."""
    group = argparse.ArgumentParser(add_help=False)
    add_hf_prune_arguments(group)
    return [a.option_strings[0] for a in group._actions if getattr(args, a.dest, None) != defaults.get(a.dest)]


def is_hf(args: argparse.Namespace) -> bool:
    return isinstance(getattr(args, "model", None), str) and args.model.startswith("hf:")


def run_hf(args: argparse.Namespace, extra: dict[str, Any]) -> int:
    method = args.method
    cfg = HFPruneConfig(model=args.model, out=args.out, method=method, sparsity=args.sparsity, nm=args.nm,
                        ratio=args.ratio, remove=args.remove_blocks, options=dict(extra), text=args.text,
                        calib_samples=args.calib_samples, seq_len=args.seq_len, heldout=args.heldout, distill_steps=args.distill_steps,
                        lora=args.lora, latency_runs=args.latency_runs, seed=args.seed,
                        overwrite=args.overwrite)
    rep = run_hf_prune(cfg)
    m = rep["metrics"]
    shown = {k: m[k] for k in ("mean_cosine", "spearman", "perplexity_dense", "perplexity_pruned", "speedup")
             if k in m}
    print(f"{method} on {args.model} -> {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
          + f"; params {m['params_dense']:,} -> {m['params_pruned']:,}; saved as {rep['saved']['format']}")
    return 0
