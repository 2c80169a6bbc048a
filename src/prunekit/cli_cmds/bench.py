"""`prunekit bench <suite>`: run a benchmark suite (redundancy, coarse, admm, speed, compression) into
benchmarks/results/<suite>/ (or --out), or `prunekit bench auto ...` (prunekit.cli_cmds.bench_auto).

Every flag left out takes the suite's preset (default size, or --quick); see prunekit.bench."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from typing import Any

SUITES = ("redundancy", "coarse", "admm", "speed", "compression")
AUTO = "auto"


def _auto_module():
    """prunekit.cli_cmds.bench_auto (written by others) when present and importable."""
    try:
        if importlib.util.find_spec("prunekit.cli_cmds.bench_auto") is None:
            return None
        return importlib.import_module("prunekit.cli_cmds.bench_auto")
    except ImportError:
        return None


def _arch(text: str) -> tuple[str, float]:
    name, _, width = text.partition(":")
    return name, float(width) if width else 1.0


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny subset, one seed and target, a few steps")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/<suite>)")
    p.add_argument("--cache-dir", default=None, help="trained bases (default ~/.cache/prunekit/bench)")
    p.add_argument("--archs", nargs="+", type=_arch, default=None, metavar="NAME[:WIDTH]",
                   help="architectures, e.g. resnet20:0.5 vgg11:0.25")
    p.add_argument("--targets", nargs="+", type=float, default=None, help="fractions of MACs kept")
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--dataset", default=None, help="fashion-mnist (default), cifar10 (with --data-dir), ...")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-samples", type=int, default=None, help="training images (0 = all)")
    p.add_argument("--test-samples", type=int, default=None, help="test images (0 = all)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--base-epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--finetune-steps", type=int, default=None, help="optimizer steps per fine-tuning epoch (cap; 0 = whole epochs)")
    p.add_argument("--finetune-lr", type=float, default=None)
    p.add_argument("--latency-runs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 1: a shared small machine)")
    p.add_argument("--no-peer", action="store_true", help="skip torch-pruning even where installed")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="suite option (YAML value), e.g. every=20, rho=0.5, source=DIR; repeatable")


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="suite", metavar="suite")
    for name in SUITES:
        add_suite_arguments(sub.add_parser(name, help=f"the {name} suite"))
    auto = _auto_module()
    if auto is not None and callable(getattr(auto, "add_bench_auto_parser", None)):
        auto.add_bench_auto_parser(sub)
    elif auto is not None:
        ap = sub.add_parser(AUTO, help="auto policy benchmark (prunekit.cli_cmds.bench_auto)")
        add = getattr(auto, "add_bench_auto_arguments", None) or getattr(auto, "add_arguments", None)
        if callable(add):
            add(ap)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    import yaml
    opts = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--opt {item!r}: expected KEY=VALUE")
        opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
    zero_none = lambda v: None if v is None else (v or None)  # noqa: E731  (0 = all samples)
    over = {"out": args.out, "cache_dir": args.cache_dir, "archs": args.archs, "targets": args.targets,
            "seeds": args.seeds, "dataset": args.dataset, "data_dir": args.data_dir,
            "batch_size": args.batch_size, "base_epochs": args.base_epochs, "finetune_epochs": args.finetune_epochs,
            "finetune_lr": args.finetune_lr,
            "latency_runs": args.latency_runs, "threads": args.threads, "opts": opts}
    for key in ("train_samples", "test_samples", "finetune_steps"):
        v = getattr(args, key)
        if v is not None:
            over[key] = zero_none(v)
    if args.no_peer:
        over["peer"] = False
    return over


def cmd_bench(args: argparse.Namespace) -> int:
    from .common import CliError
    suite = getattr(args, "suite", None)
    if suite == AUTO:
        auto = _auto_module()
        run = getattr(auto, "cmd_bench_auto", None) or getattr(auto, "run", None) if auto else None
        if not callable(run):
            raise CliError("'prunekit bench auto' is not available")
        return int(run(args) or 0)
    if suite not in SUITES:
        raise CliError(f"give a suite: {', '.join(SUITES)}" + (f" or {AUTO}" if _auto_module() else ""))
    from ..bench import suite_config, suite_module
    from ..bench.output import command_line
    cfg = suite_config(suite, args.quick, **overrides(args))
    cfg.command = command_line()
    results = suite_module(suite).run(cfg)
    out = cfg.out or f"benchmarks/results/{suite}"
    print(f"{suite}: {len(results['results'])} table rows -> {out}/results.md (wall {results['wall_s'] / 60:.1f} min)")
    return 0
