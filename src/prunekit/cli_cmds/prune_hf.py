"""`prunekit prune --model hf:<folder or package>`: the flags of the calibration-based transformer methods
(magnitude, wanda, sparsegpt, flap, depth), parsed into a prunekit.workflow.HFWorkflowConfig for
run_hf_workflow."""
from __future__ import annotations

import argparse
from typing import Any

from ..transformers.distill import DistillConfig
from ..transformers.methods import CALIBRATION_METHODS
from ..workflow import HFWorkflowConfig, TextConfig, run_hf_workflow
from ..utils import argtypes as T
from .common import CliError, in_flags

# the hf: flags that set a calibration method's option -> that option (the method's config field)
OPTION_FLAGS = {"--sparsity": "sparsity", "--nm": "nm", "--ratio": "ratio", "--remove-blocks": "remove"}
# error messages naming those options by keyword (`remove=3 but only ...`) are said with the flag instead
HF_FLAGS = {r"(?<![\w.])remove=": "--remove-blocks "}


def add_hf_prune_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hf: models (magnitude, wanda, sparsegpt, flap, depth)")
    g.add_argument("--sparsity", type=T.fraction, default=None, help="unstructured sparsity in [0, 1) (default 0.5)")
    g.add_argument("--nm", default=None, metavar="N:M", help="keep N of every M weights, e.g. 2:4")
    g.add_argument("--remove-blocks", type=T.positive_int, default=None, help="blocks removed by --method depth")
    g.add_argument("--calib-samples", type=T.positive_int, default=128, help="calibration windows")
    g.add_argument("--seq-len", type=T.positive_int, default=64, help="tokens per calibration window")
    g.add_argument("--heldout", type=T.int_between(3), default=256,
                   help="held-out sentences / windows for metrics (>= 3)")
    g.add_argument("--text", default="fortunes", help="fortunes, fortunes:<dir> or a folder of .txt files")
    g.add_argument("--distill-steps", type=T.nonneg_int, default=0, help="distillation steps after pruning")
    g.add_argument("--lora", action="store_true", help="distil LoRA adapters (merged) instead of all weights")


def hf_only_flags(given: set[str]) -> list[str]:
    """The hf: model flags among `given` (the options set on the command line or in a recipe, even to their
    default value)."""
    group = argparse.ArgumentParser(add_help=False)
    add_hf_prune_arguments(group)
    return [a.option_strings[0] for a in group._actions if a.dest in given]


# the `prunekit prune` options an hf: run reads besides its own group; every other one is channel pruning's
HF_READS = ("model", "method", "ratio", "latency_runs", "seed", "out", "overwrite", "recipe", "method_arg",
            "no_progress")


def channel_only_flags(given: set[str], defaults: dict[str, Any]) -> list[str]:
    """The channel-pruning options (dests) among `given` that an hf: run would not read (--criterion,
    --target-macs, --finetune-epochs, --device, ...), even when given their default value."""
    group = argparse.ArgumentParser(add_help=False)
    add_hf_prune_arguments(group)
    own = {a.dest for a in group._actions} | set(HF_READS)
    return sorted(k for k in defaults if k not in own and k in given)


def is_hf(args: argparse.Namespace) -> bool:
    return isinstance(getattr(args, "model", None), str) and args.model.startswith("hf:")


def config_from_hf_args(args: argparse.Namespace, extra: dict[str, Any]) -> HFWorkflowConfig:
    """The HFWorkflowConfig the flags describe: --sparsity, --nm, --ratio and --remove-blocks join the method's
    options (over --method-arg / recipe values), which its registered config type checks."""
    flags = {"sparsity": args.sparsity, "nm": args.nm, "ratio": args.ratio, "remove": args.remove_blocks}
    takes = CALIBRATION_METHODS.config_type(args.method).field_names()  # an unknown method lists the known ones
    stray = [f for f, k in OPTION_FLAGS.items() if flags[k] is not None and k not in takes]
    if stray:  # named by flag here, rather than by the method's keyword in its unknown-keyword error
        own = [f for f, k in OPTION_FLAGS.items() if k in takes]
        raise CliError(f"{', '.join(stray)}: not read by --method {args.method} (it takes "
                       f"{', '.join(own) or 'none of --sparsity, --nm, --ratio, --remove-blocks'}; an option this run "
                       "would not read is refused, not ignored)")
    options = {**extra, **{k: v for k, v in flags.items() if v is not None}}
    distill = (DistillConfig(steps=args.distill_steps, loss="auto", lora=args.lora, seed=args.seed)
               if args.distill_steps else None)
    return HFWorkflowConfig(model=args.model, method=args.method, options=options,
                            text=TextConfig(source=args.text, calib_samples=args.calib_samples, seq_len=args.seq_len,
                                            heldout=args.heldout),
                            distill=distill, latency_runs=args.latency_runs, seed=args.seed, out=args.out,
                            overwrite=args.overwrite)


def run_hf(args: argparse.Namespace, extra: dict[str, Any], defaults: dict[str, Any], given: set[str]) -> int:
    """Run `prunekit prune --model hf:...`; options it would not read are refused, not ignored."""
    stray = channel_only_flags(given, defaults)
    if stray:
        flags = ", ".join("--" + k.replace("_", "-") for k in stray)
        raise CliError(f"{flags}: channel-pruning option(s) that --model hf:<model> does not read; the hf: methods "
                       "take --sparsity, --nm, --ratio, --remove-blocks, --text, --calib-samples, --seq-len, "
                       "--heldout, --distill-steps, --lora (see prunekit prune --help)")
    if args.lora and not args.distill_steps:
        raise CliError("--lora trains LoRA adapters during distillation: give --distill-steps N (> 0) too")
    log = (lambda _line: None) if args.no_progress else print
    with in_flags(HF_FLAGS):
        res = run_hf_workflow(config_from_hf_args(args, extra), log=log)
    after = res.after
    shown = {k: after[k] for k in ("mean_cosine", "spearman", "perplexity") if k in after}
    if res.before.get("latency_ms") and after.get("latency_ms"):
        shown["speedup"] = res.before["latency_ms"] / after["latency_ms"]
    saved = res.report["extra"]["saved"]
    print(f"{res.config.method} on {args.model} -> {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
          + f"; params {res.before['params']:,} -> {after['params']:,} (non-zero {after['nonzero_params']:,}); "
          f"saved as {saved['format']}")
    return 0
