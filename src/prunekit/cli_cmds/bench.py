"""`prunekit bench <suite>`: run a benchmark suite (redundancy, coarse, admm, speed, compression, auto) into
benchmarks/results/<suite>/ (or --out), which must not hold earlier results unless --overwrite.

Every flag left out takes the suite's preset (default size, or --quick); see prunekit.bench."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..bench import SUITES, suite_config, suite_module
from ..bench.auto import add_bench_auto_parser, cmd_bench_auto
from ..bench.output import command_line
from ..bench.config import unread_settings
from ..bench.rows import ROWS_FILE
from ..workflow import prepare_output_dir
from . import argtypes as T
from .common import CliError, key_values


def _arch(text: str) -> tuple[str, float]:
    name, _, width = text.partition(":")
    if not width:
        return name, 1.0
    try:
        w = float(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the width after ':' must be a number") from None
    if not w > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the width must be > 0")
    return name, w


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny subset, one seed and target, a few steps")
    p.add_argument("--full", action="store_true",
                   help="the realistic budget (whole data set, full-width models, base 8 epochs, 3 fine-tuning "
                        "epochs, 2 seeds; hours): into <out>/full")
    p.add_argument("--resume", action="store_true",
                   help="continue the suite in --out: rows already in its rows.jsonl are kept, the rest run")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/<suite>)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--cache-dir", default=None, help="trained bases (default ~/.cache/prunekit/bench)")
    p.add_argument("--archs", nargs="+", type=_arch, default=None, metavar="NAME[:WIDTH]",
                   help="architectures, e.g. resnet20:0.5 vgg11:0.25")
    p.add_argument("--targets", nargs="+", type=T.keep_fraction, default=None, help="fractions of MACs kept")
    p.add_argument("--seeds", nargs="+", type=T.nonneg_int, default=None)
    p.add_argument("--dataset", default=None, help="fashion-mnist (default), cifar10 (with --data-dir), ...")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-samples", type=T.nonneg_int, default=None, help="training images (0 = all)")
    p.add_argument("--test-samples", type=T.nonneg_int, default=None, help="test images (0 = all)")
    p.add_argument("--batch-size", type=T.positive_int, default=None)
    p.add_argument("--base-epochs", type=T.nonneg_int, default=None)
    p.add_argument("--finetune-epochs", type=T.nonneg_int, default=None)
    p.add_argument("--finetune-steps", type=T.nonneg_int, default=None,
                   help="optimizer steps per fine-tuning epoch (cap; 0 = whole epochs)")
    p.add_argument("--finetune-lr", type=T.positive_float, default=None)
    p.add_argument("--score-batches", type=T.nonneg_int, default=None,
                   help="batches per ranking pass of data-driven criteria (0 = the whole training set)")
    p.add_argument("--latency-runs", type=T.positive_int, default=None,
                   help="timed runs per model and batch (>= 1: the suites report measured speedups)")
    p.add_argument("--threads", type=T.positive_int, default=None, help="torch threads (default 1: a shared small machine)")
    p.add_argument("--no-peer", action="store_true", help="skip torch-pruning even where installed")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="suite option (YAML value), e.g. every=20, rho=0.5, source=DIR; repeatable")


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="suite", metavar="suite")
    for name in SUITES:
        add_suite_arguments(sub.add_parser(name, help=f"the {name} suite"))
    add_bench_auto_parser(sub)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    opts = key_values(args.opt, "--opt")
    over = {"out": args.out, "cache_dir": args.cache_dir, "archs": args.archs, "targets": args.targets,
            "seeds": args.seeds, "dataset": args.dataset, "data_dir": args.data_dir,
            "batch_size": args.batch_size, "base_epochs": args.base_epochs, "finetune_epochs": args.finetune_epochs,
            "finetune_lr": args.finetune_lr,
            "latency_runs": args.latency_runs, "threads": args.threads, "opts": opts}
    if args.score_batches is not None:
        over["score_batches"] = args.score_batches
    for key in ("train_samples", "test_samples", "finetune_steps"):
        v = getattr(args, key)
        if v is not None:
            over[key] = v or None  # 0 = all samples / whole epochs
    if args.no_peer:
        over["peer"] = False
    return over


def remove_if_rowless(out: Path) -> None:
    """Remove `out` when it holds nothing but a rows file without rows (the settings header alone)."""
    rows = out / ROWS_FILE
    if rows.is_file() and len(rows.read_text().splitlines()) <= 1:
        rows.unlink()
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def cmd_bench(args: argparse.Namespace) -> int:
    suite = getattr(args, "suite", None)
    if suite == "auto":
        return int(cmd_bench_auto(args) or 0)
    if suite not in SUITES:
        raise CliError(f"give a suite: {', '.join(SUITES)} or auto")
    if args.quick and args.full:
        raise CliError("give either --quick or --full, not both")
    if args.resume and args.overwrite:
        raise CliError("give either --resume (continue the rows in --out) or --overwrite (start afresh), not both")
    module = suite_module(suite)
    if (args.full or args.resume) and not getattr(module, "RESUMABLE", False):
        raise CliError(f"--full and --resume are for the suites with resumable rows "
                       f"({', '.join(s for s in SUITES if getattr(suite_module(s), 'RESUMABLE', False))}), "
                       f"not {suite}")
    if args.full and getattr(module, "NO_FULL", None):
        raise CliError(f"--full: {module.NO_FULL}")
    over = overrides(args)
    unread = unread_settings(module, [k for k, v in over.items() if v is not None and k not in ("out", "opts")])
    if unread:  # a flag the suite would ignore is refused, with the reason
        raise CliError("; ".join(f"--{'no-peer' if k == 'peer' else k.replace('_', '-')}: {why}"
                                 for k, why in unread.items()))
    cfg = suite_config(suite, args.quick, full=args.full, resume=args.resume, **over)
    cfg.command = command_line()
    out = cfg.out or f"benchmarks/results/{suite}" + ("/full" if args.full else "")
    cfg.out = out
    created = not Path(out).exists()
    prepare_output_dir(Path(out), overwrite=args.overwrite, resume=args.resume, resume_file=ROWS_FILE)
    try:
        results = module.run(cfg)
    except BaseException:  # a run stopped before its first row leaves no folder of its own; finished rows stay
        if created:
            remove_if_rowless(Path(out))
        raise
    print(f"{suite}: {len(results['results'])} table rows -> {out}/results.md (wall {results['wall_s'] / 60:.1f} min)")
    return 0
