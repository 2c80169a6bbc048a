"""The `prunekit` command line: one `add_<name>_parser(sub)` and one `cmd_<name>(args)` per subcommand.

Subcommands implemented in a module `prunekit.cli_cmds.<name>` plug in without editing this file: that
module defines `add_<name>_arguments(parser)` (or `add_arguments`) and `cmd_<name>(args) -> int | None`
(or `run`); keep its top-level imports light, it is imported whenever the parser is built. `prunekit demo` runs `prunekit.demo:run(args)` likewise."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

# re-exported: subcommand modules import these from prunekit.cli
from .cli_cmds.common import (CliError, add_data_args, add_model_args, build_loaders, example_input,  # noqa: F401
                              load_model, load_model_with_shape, maybe_import, measure_model, metric_rows,
                              model_kwargs, print_table, save_model)


# ----------------------------------------------------------------------------- info
def add_info_parser(sub) -> None:
    p = sub.add_parser("info", help="parameters, MACs, latency and size of a model or checkpoint")
    p.add_argument("target", help="registered model name, torchvision:<name>, or a saved model / checkpoint path")
    add_model_args(p)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="latency batch sizes")
    p.add_argument("--runs", type=int, default=30, help="timed runs per latency (0 = skip latency)")
    p.add_argument("--threads", type=int, default=None, help="torch threads while timing")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from .models import create, default_input_size, get_entry, spec_of
    shape = None
    if Path(args.target).exists():
        model, shape = load_model_with_shape(args.target)
    else:
        get_entry(args.target)  # unknown names list the valid ones
        name = args.target
        channels = args.in_channels or (1 if default_input_size(name) == 28 else 3)
        model = create(name, **model_kwargs(name, args.num_classes or 10, channels, args.width, args.input_size))
    spec = spec_of(model)
    kw = spec.kwargs if spec else {}
    channels = args.in_channels or (shape[0] if shape else kw.get("in_channels", 3))
    size = args.input_size or (shape[1:] if shape else None) or kw.get("input_size") or (
        default_input_size(spec.name) if spec else 224)
    metrics = measure_model(model, example_input(channels, size), args.runs, args.batches, args.device, args.threads)
    result = {"model": spec.to_dict() if spec else {"name": type(model).__name__},
              "input_shape": list(example_input(channels, size).shape), **metrics}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(f"{result['model']['name']}  input {tuple(result['input_shape'])}", metric_rows(metrics))
    return 0


# ----------------------------------------------------------------------------- train
def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a registered model on a data set; writes report.json")
    add_model_args(p, required=True)
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=None, help="default: 0.1 for sgd, 1e-3 for adamw")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", default="runs/train", help="output folder (checkpoints, model, report)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace checkpoints of an earlier run in OUT")
    p.add_argument("--latency-runs", type=int, default=30)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .models import create
    from .report import write_report
    from .train import TrainConfig, Trainer, evaluate, init_distributed, is_main_process
    t_start = time.perf_counter()
    dist = init_distributed()
    info, loaders = build_loaders(args, distributed=dist.world_size > 1)
    h, w = info.image_size
    size = args.input_size or (h if h == w else [h, w])
    kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                      args.width, size)
    model = create(args.model, **kw)
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    config = TrainConfig(epochs=args.epochs, lr=lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                         warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, amp=args.amp,
                         seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch,
                         progress=not args.no_progress)
    out = Path(args.out)
    trainer = Trainer(model, loaders.train, loaders.val, config, device=args.device or dist.device,
                      checkpoint_dir=out, resume=args.resume, overwrite=args.overwrite)
    result = trainer.fit()
    t_train = time.perf_counter() - t_start
    test = evaluate(trainer.module, loaders.test, trainer.device)
    if not is_main_process():
        return 0
    model = trainer.module.cpu()
    save_model(model, out, (kw["in_channels"], *info.image_size))
    metrics = measure_model(model, example_input(kw["in_channels"], info.image_size), args.latency_runs)
    metrics.update(top1=test["top1"], top5=test["top5"], loss=test["loss"])
    write_report(out, {
        "model": {"name": args.model, **kw},
        "data": {"dataset": info.name, "data_dir": args.data_dir, "train": len(loaders.train.dataset),
                 "val": len(loaders.val.dataset) if loaders.val else 0, "test": len(loaders.test.dataset),
                 "seed": args.seed, "augment": args.augment},
        "method": {"name": "train", "config": config},
        "metrics": {"before": metrics, "after": None},
        "timings": {"train": t_train, "total": time.perf_counter() - t_start},
        "history": result.history,
    })
    print_table(f"{args.model} on {info.name}: {result.epochs} epochs, {t_train:.1f} s -> {out}", metric_rows(metrics))
    return 0


# ----------------------------------------------------------------------------- demo
def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="a short end-to-end run that prints a table")
    demo = maybe_import("prunekit.demo")
    if demo is not None and hasattr(demo, "add_arguments"):
        demo.add_arguments(p)
    else:
        add_data_args(p)
        p.add_argument("--out", default="runs/demo")
        p.add_argument("--epochs", type=int, default=1)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int | None:
    demo = maybe_import("prunekit.demo")
    if demo is not None and hasattr(demo, "run"):
        return demo.run(args)
    from .data import DataNotFoundError, dataset_info
    try:
        dataset_info(args.dataset, args.data_dir)
        from .data import get_dataset
        get_dataset(args.dataset, args.data_dir, split="test", subset=1)
    except DataNotFoundError as e:
        print(f"{e}\nFalling back to the digits data set.", file=sys.stderr)
        args.dataset, args.data_dir = "digits", None
    targs = build_parser().parse_args(["train", "--model", "lenet5", "--out", args.out, "--overwrite"])
    for key, value in vars(args).items():  # the demo's data and epoch flags carry over
        if key not in ("func", "command") and hasattr(targs, key):
            setattr(targs, key, value)
    if args.dataset == "digits":
        targs.input_size = 28  # LeNet-5 needs more than 8x8 pixels
    return cmd_train(targs)


# ----------------------------------------------------------------------------- subcommands others fill in
_SHARED_MODULE = {"decompress": "compress"}  # subcommands implemented in another subcommand's module


def _external(name: str, kind: str) -> Callable | None:
    """`add_<name>_arguments` / `add_arguments` (kind "add") or `cmd_<name>` / `run` (kind "run") from
    prunekit.cli_cmds.<name> (or the module it shares), None when not written yet."""
    wanted = (f"add_{name}_arguments", "add_arguments") if kind == "add" else (f"cmd_{name}", "run")
    for module in dict.fromkeys([name, _SHARED_MODULE.get(name, name)]):
        mod = maybe_import(f"prunekit.cli_cmds.{module}")
        for attr in wanted if module == name else wanted[:1]:
            if mod is not None and callable(getattr(mod, attr, None)):
                return getattr(mod, attr)
    return None


def _add_external(sub, name: str, help_text: str, func: Callable[[argparse.Namespace], Any]) -> None:
    p = sub.add_parser(name, help=help_text)
    add = _external(name, "add")
    if add is not None:
        add(p)
    p.set_defaults(func=func)


def _run_external(name: str, args: argparse.Namespace) -> int | None:
    run = _external(name, "run")
    if run is None:
        raise CliError(f"'prunekit {name}' is not implemented yet")
    return run(args)


def add_prune_parser(sub) -> None:
    _add_external(sub, "prune", "prune a model (method, criterion, policy, target or a YAML recipe)", cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int | None:
    return _run_external("prune", args)


def add_analyze_parser(sub) -> None:
    _add_external(sub, "analyze", "channel groups and sensitivity of a model", cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int | None:
    return _run_external("analyze", args)


def add_bench_parser(sub) -> None:
    _add_external(sub, "bench", "compare pruning configurations side by side", cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int | None:
    return _run_external("bench", args)


def add_export_parser(sub) -> None:
    _add_external(sub, "export", "export a (pruned) model to ONNX", cmd_export)


def cmd_export(args: argparse.Namespace) -> int | None:
    return _run_external("export", args)


def add_report_parser(sub) -> None:
    _add_external(sub, "report", "render report.json files as Markdown/HTML and plots", cmd_report)


def cmd_report(args: argparse.Namespace) -> int | None:
    return _run_external("report", args)


def add_compress_parser(sub) -> None:
    _add_external(sub, "compress", "weight sharing + Huffman coding into a compressed file", cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int | None:
    return _run_external("compress", args)


def add_decompress_parser(sub) -> None:
    _add_external(sub, "decompress", "rebuild a model from a compressed file", cmd_decompress)


def cmd_decompress(args: argparse.Namespace) -> int | None:
    return _run_external("decompress", args)


# ----------------------------------------------------------------------------- entry point
SUBCOMMANDS = ["demo", "train", "info", "prune", "analyze", "bench", "export", "report", "compress",
               "decompress"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunekit", description="Prune PyTorch models and measure what it buys.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name in SUBCOMMANDS:
        globals()[f"add_{name}_parser"](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for user errors, printed without a traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .data import DataError
    try:
        rc = args.func(args)
    except (CliError, DataError, ValueError, FileNotFoundError, FileExistsError) as e:
        if args.debug:
            raise
        print(f"prunekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
