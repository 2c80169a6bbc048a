"""`prunekit demo` (`make demo`): the whole story on Fashion-MNIST in a few minutes on two CPU cores.

Train a ResNet-20 at 0.75 width on 20,000 of the training images for three epochs (or reuse the base
cached under ~/.cache/prunekit/bases by an earlier run), analyse its channel groups (width, MACs share, SRR
redundancy), prune it to half of its MACs with SRR (most redundant layer first, smallest-L1 filters),
fine-tune three epochs with distillation from the base, and print a before/after table. The report folder
(default runs/demo) holds report.json, report.md, the pruned model and the plots. Without Fashion-MNIST (and without an explicit
--data-dir, which is the only place read when given) it falls back to scikit-learn's digits (resized to
28x28) so that it still runs offline. The run itself is `prunekit.workflow.run_workflow`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from ..data import DataNotFoundError, dataset_info, get_dataset
from ..report.console import before_after_rows, print_analysis, print_before_after
from ..workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, RecoverConfig, WorkflowConfig,
                        run_workflow)
from . import argtypes as T


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None, help="the only place read when given (no fallback then)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=T.positive_float, default=0.75, help="width multiplier of the model")
    p.add_argument("--train-samples", type=T.positive_int, default=20000, help="training images used (seeded subset)")
    p.add_argument("--val-samples", type=T.nonneg_int, default=2000, help="validation images held out of training")
    p.add_argument("--test-samples", type=T.positive_int, default=None, help="test images (default: all)")
    p.add_argument("--epochs", type=T.nonneg_int, default=3, help="base training epochs")
    p.add_argument("--finetune-epochs", type=T.nonneg_int, default=3)
    p.add_argument("--finetune-lr", type=T.positive_float, default=0.02)
    p.add_argument("--target-macs", type=T.keep_fraction, default=0.5)
    p.add_argument("--method", default="srr")
    p.add_argument("--no-distill", action="store_true", help="fine-tune without distillation")
    p.add_argument("--batch-size", type=T.positive_int, default=128)
    p.add_argument("--seed", type=T.nonneg_int, default=0)
    p.add_argument("--latency-runs", type=T.nonneg_int, default=20)
    p.add_argument("--cache-dir", default=None, help="trained bases (default ~/.cache/prunekit/bases)")
    p.add_argument("--no-cache", action="store_true", help="train the base even when one is cached")
    p.add_argument("--threads", type=T.positive_int, default=None,
                   help="torch threads (default: torch's, or 1 when the load average says the CPUs are busy)")


def _dataset(args: argparse.Namespace) -> tuple[str, int | None]:
    """(data set, image size): the one asked for, or digits at 28x28 when Fashion-MNIST is nowhere and no
    --data-dir was given (an explicit folder that lacks the files is an error, never a fallback)."""
    try:
        dataset_info(args.dataset, args.data_dir)
        get_dataset(args.dataset, args.data_dir, split="test", subset=1)
    except DataNotFoundError as e:
        if args.data_dir is not None:
            raise
        print(f"{e}\nFalling back to the digits data set (resized to 28x28).", file=sys.stderr)
        return "digits", 28
    return args.dataset, None


def _default_threads() -> int | None:
    """1 on a machine already busy (small convolutions on oversubscribed cores mostly wait), else torch's."""
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return None
    return 1 if busy else None


def demo_config(args: argparse.Namespace, dataset: str, image_size: int | None) -> WorkflowConfig:
    """The workflow configuration the demo amounts to."""
    val = args.val_samples if dataset != "digits" else min(args.val_samples, 300)
    return WorkflowConfig(
        model=ModelConfig(name=args.model, width=args.width, input_size=image_size),
        data=DataConfig(dataset=dataset, data_dir=args.data_dir if dataset == args.dataset else None,
                        val_size=val, train_subset=args.train_samples, test_subset=args.test_samples,
                        batch_size=args.batch_size, eval_batch_size=500),
        base=BaseConfig(epochs=args.epochs, lr=0.1, cache_dir=args.cache_dir, use_cache=not args.no_cache),
        prune=PruneConfig(method=args.method, criterion="l1", target={"macs": args.target_macs}),
        recover=RecoverConfig(finetune_epochs=args.finetune_epochs, lr=args.finetune_lr, distill=not args.no_distill),
        seed=args.seed, latency_runs=args.latency_runs, analyze=True, out=args.out, overwrite=args.overwrite)


def cmd_demo(args: argparse.Namespace) -> int:
    threads = args.threads or _default_threads()
    if threads:
        torch.set_num_threads(threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    dataset, size = _dataset(args)
    cfg = demo_config(args, dataset, size)
    print(f"prunekit demo: {args.model} (width {args.width}) on {dataset}, {args.train_samples:,} training images "
          f"at most, {args.method} to {100 * args.target_macs:.0f}% of the MACs, {torch.get_num_threads()} torch threads")
    result = run_workflow(cfg)
    if result.analysis is not None:
        print_analysis(result.analysis, f"{args.model} (width {args.width}): channel groups before pruning")
    m = {"before": result.before, "after": result.after}
    total = time.perf_counter() - t0
    print_before_after(f"{args.model} on {dataset}: {args.method}, target {100 * args.target_macs:.0f}% MACs",
                       before_after_rows(m["before"], m["after"]))
    t = result.timings
    phases = {"base": t.get("base", 0.0), "analyze": t.get("analyze", 0.0),
              "prune": sum(v for k, v in t.items() if k.startswith("method.") and k not in
                           ("method.finetune", "method.total")),
              "fine-tune": t.get("method.finetune", 0.0),
              "measure": t.get("measure_before", 0.0) + t.get("measure_after", 0.0)}
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()) +
          f"; total {total:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU")
    macs_kept = m["after"]["macs"] / m["before"]["macs"]
    delta = 100 * (m["after"]["top1"] - m["before"]["top1"])
    print(f"MACs kept {100 * macs_kept:.1f}%, accuracy {delta:+.2f} points; report: {args.out}/report.md")
    return 0
