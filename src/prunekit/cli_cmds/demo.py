"""`prunekit demo` (`make demo`): the whole story on Fashion-MNIST in a few minutes on two CPU cores.

Train a ResNet-20 at 0.75 width on 20,000 of the training images for three epochs (or reuse the base
cached under ~/.cache/prunekit/bases by an earlier run), analyse its channel groups (width, MACs share, SRR
redundancy), prune it to half of its MACs with SRR (most redundant layer first, smallest-L1 filters),
fine-tune three epochs with distillation from the base, and print a before/after table. The report folder
(default runs/demo) holds report.json, report.md, the pruned model and the plots. Without Fashion-MNIST it falls back to scikit-learn's
digits (resized to 28x28) so that it still runs offline.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=0.75, help="width multiplier of the model")
    p.add_argument("--train-samples", type=int, default=20000, help="training images used (seeded subset)")
    p.add_argument("--val-samples", type=int, default=2000, help="validation images held out of training")
    p.add_argument("--test-samples", type=int, default=None, help="test images (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="base training epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=0.02)
    p.add_argument("--target-macs", type=float, default=0.5)
    p.add_argument("--method", default="srr")
    p.add_argument("--no-distill", action="store_true", help="fine-tune without distillation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--cache-dir", default=None, help="trained bases (default ~/.cache/prunekit/bases)")
    p.add_argument("--no-cache", action="store_true", help="train the base even when one is cached")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's, or 1 when the load average says the CPUs are busy)")


def _loaders(args: argparse.Namespace):
    """(DatasetInfo, Loaders): a seeded training subset, held-out validation images, the test set."""
    from .data import DataNotFoundError, Loaders, dataset_info, get_dataset, make_loader
    size = None
    try:
        info = dataset_info(args.dataset, args.data_dir)
        get_dataset(args.dataset, args.data_dir, split="test", subset=1)
    except DataNotFoundError as e:
        print(f"{e}\nFalling back to the digits data set (resized to 28x28).", file=sys.stderr)
        args.dataset, args.data_dir, size = "digits", None, 28
        info = dataset_info("digits", None, size)
    val = args.val_samples if args.dataset != "digits" else min(args.val_samples, 300)
    kw = dict(data_dir=args.data_dir, seed=args.seed, image_size=size, val_size=val)
    train = get_dataset(args.dataset, split="train", subset=args.train_samples, **kw)
    val_ds = get_dataset(args.dataset, split="val", **kw)
    test = get_dataset(args.dataset, split="test", subset=args.test_samples, **kw)
    return info, Loaders(make_loader(train, args.batch_size, shuffle=True, seed=args.seed),
                         make_loader(val_ds, 500), make_loader(test, 500))


def _default_threads() -> int | None:
    """1 on a machine already busy (small convolutions on oversubscribed cores mostly wait), else torch's."""
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return None
    return 1 if busy else None


def prune_args(args: argparse.Namespace) -> argparse.Namespace:
    """The `prunekit prune` arguments the demo amounts to."""
    from .cli_cmds.prune import add_arguments as add_prune
    p = argparse.ArgumentParser(add_help=False)
    add_prune(p)
    a = p.parse_args([])
    a.model, a.width, a.dataset, a.data_dir = args.model, args.width, args.dataset, args.data_dir
    a.method, a.target_macs, a.epochs, a.finetune_epochs = args.method, args.target_macs, args.epochs, args.finetune_epochs
    a.finetune_lr, a.distill, a.seed, a.out = args.finetune_lr, not args.no_distill, args.seed, args.out
    a.batch_size, a.latency_runs, a.cache_dir, a.no_cache = args.batch_size, args.latency_runs, args.cache_dir, args.no_cache
    a.subset, a.val_size, a.criterion, a.no_progress = args.train_samples, args.val_samples, "l1", False
    if args.dataset == "digits":
        a.input_size = 28
    return a


def run(args: argparse.Namespace) -> int:
    import torch

    from .cli_cmds.prune import before_after_rows, pipeline, print_before_after
    threads = args.threads or _default_threads()
    if threads:
        torch.set_num_threads(threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    data = _loaders(args)
    a = prune_args(args)
    print(f"prunekit demo: {args.model} (width {args.width}) on {args.dataset}, {len(data[1].train.dataset):,} "
          f"training images, {args.method} to {100 * args.target_macs:.0f}% of the MACs, "
          f"{torch.get_num_threads()} torch threads")
    report = pipeline(a, analyze_first=True, data=data)
    m = report["metrics"]
    total = time.perf_counter() - t0
    print_before_after(f"{args.model} on {args.dataset}: {args.method}, target {100 * args.target_macs:.0f}% MACs",
                       before_after_rows(m["before"], m["after"]))
    t = report["timings"]
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
