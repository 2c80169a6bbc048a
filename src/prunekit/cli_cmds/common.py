"""Helpers shared by the `prunekit` subcommands: argument groups, building loaders and models, loading
saved models, measuring and printing. Subcommand modules in prunekit.cli_cmds import from here."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

MODEL_FILE = "model.json"  # registry spec written next to trainer checkpoints


class CliError(Exception):
    """A user error: printed as one message, exit status 2."""


# ----------------------------------------------------------------------------- shared argument groups
def add_model_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--model, --num-classes, --in-channels, --width, --input-size."""
    p.add_argument("--model", required=required, help="registered model name or torchvision:<name>")
    p.add_argument("--num-classes", type=int, default=None, help="default: the data set's")
    p.add_argument("--in-channels", type=int, default=None, help="default: the data set's")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier")
    p.add_argument("--input-size", type=int, default=None, help="image side (default: data set or model's)")


def add_data_args(p: argparse.ArgumentParser, default: str = "fashion-mnist") -> None:
    """--dataset, --data-dir, --val-size, --subset, --batch-size, --workers, --augment, --seed."""
    p.add_argument("--dataset", default=default, help="fashion-mnist, digits, cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder holding the data set's files")
    p.add_argument("--val-size", type=float, default=None, help="validation count or fraction (0 = none)")
    p.add_argument("--subset", type=int, default=None, help="at most this many samples per split")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--augment", action="store_true", help="random crop (pad 4) and horizontal flip")
    p.add_argument("--seed", type=int, default=0)


def _val_size(v: float | None) -> int | float | None:
    return None if v is None else (int(v) if float(v).is_integer() else float(v))


def build_loaders(args: argparse.Namespace, distributed: bool = False):
    """(DatasetInfo, Loaders) from the data arguments."""
    from ..data import dataset_info, get_loaders
    info = dataset_info(args.dataset, args.data_dir, getattr(args, "input_size", None))
    loaders = get_loaders(args.dataset, args.batch_size, data_dir=args.data_dir, val_size=_val_size(args.val_size),
                          seed=args.seed, subset=args.subset, augment=args.augment, num_workers=args.workers,
                          image_size=getattr(args, "input_size", None), distributed=distributed)
    return info, loaders


def model_kwargs(name: str, num_classes: int, in_channels: int, width: float,
                 input_size: int | None) -> dict[str, Any]:
    """Arguments for `models.create`, passing input_size only to factories that take it."""
    from ..models import get_entry
    kw: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels, "width": width}
    if input_size is not None and "input_size" in inspect.signature(get_entry(name).factory).parameters:
        kw["input_size"] = input_size
    return kw


def example_input(in_channels: int, size: int | tuple[int, int], batch: int = 1):
    import torch
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, in_channels, h, w)


# ----------------------------------------------------------------------------- loading models
def maybe_import(module: str) -> ModuleType | None:
    """Import prunekit.<module> if it exists (others write some of them)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


def save_model(model, out: Path, input_shape: Sequence[int] | None = None) -> list[Path]:
    """Write model.json (registry spec + the (C, H, W) input it was trained on) and, where prunekit.io
    exists, the safetensors + JSON model."""
    from ..models import spec_of
    out.mkdir(parents=True, exist_ok=True)
    written = []
    spec = spec_of(model)
    if spec is not None:
        desc = {**spec.to_dict(), **({"input_shape": list(input_shape)} if input_shape else {})}
        (out / MODEL_FILE).write_text(json.dumps(desc, indent=2) + "\n")
        written.append(out / MODEL_FILE)
    io = maybe_import("prunekit.io")
    if io is not None:
        extra = {"input_shape": list(input_shape)} if input_shape else None
        written.append(Path(io.save(model, out / "model.safetensors", overwrite=True, extra=extra)))
    return written


def _model_file(folder: Path) -> Path | None:
    return next((d / MODEL_FILE for d in (folder, folder.parent) if (d / MODEL_FILE).exists()), None)


def load_model(path: str | Path):
    """A model from a prunekit.io file, or from a trainer checkpoint (.pt) with model.json beside it."""
    return load_model_with_shape(path)[0]


def load_model_with_shape(path: str | Path):
    """(model, the (C, H, W) input recorded in model.json or None); see `load_model`."""
    import torch

    from ..models import ModelSpec
    p = Path(path)
    if not p.exists():
        raise CliError(f"{p} does not exist")
    io = maybe_import("prunekit.io")
    ckpt = p
    if p.is_dir():
        found = [p / n for n in ("model.safetensors", "last.pt", "best.pt") if (p / n).exists()]
        if not found:
            raise CliError(f"{p} holds no model.safetensors, last.pt or best.pt")
        ckpt = found[0]
    spec_file = _model_file(ckpt.parent)
    desc = json.loads(spec_file.read_text()) if spec_file else {}
    shape = desc.get("input_shape")
    if io is not None and ckpt.suffix != ".pt":
        return io.load(ckpt), shape
    if spec_file is None:
        raise CliError(f"no {MODEL_FILE} next to {ckpt}: cannot tell which architecture it holds")
    from ..train import load_checkpoint
    model = ModelSpec.from_dict(desc).build()
    state = load_checkpoint(ckpt) if ckpt.suffix == ".pt" else None
    model.load_state_dict(state["model"] if state else torch.load(ckpt, weights_only=True))
    return model, shape


# ----------------------------------------------------------------------------- measurement
def measure_model(model, example, latency_runs: int = 30, batches: Sequence[int] = (1,),
                  device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """report.json Metrics block (prunekit.measure.model_metrics) without accuracy; no timing when runs is 0."""
    from ..measure import model_metrics
    return model_metrics(model.eval(), example, device=device, threads=threads,
                         latency_batches=batches if latency_runs > 0 else (),
                         warmup=max(2, latency_runs // 5), runs=max(1, latency_runs))


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """A two-column rich table."""
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def metric_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    from ..report import format_bytes, format_count
    rows = []
    if m.get("top1") is not None:
        rows.append(("top-1 accuracy", f"{100 * m['top1']:.2f}%"))
    rows += [("parameters", f"{m['params']:,} ({format_count(m['params'])})"),
             ("MACs", f"{m['macs']:,} ({format_count(m['macs'])})"),
             ("size", f"{m['size_bytes']:,} B ({format_bytes(m['size_bytes'])})")]
    for b, r in (m.get("latency") or {}).items():
        rows.append((f"latency, batch {b} ({r['device']}, {r['threads']} threads)", f"{r['median_ms']:.3f} ms"))
    return rows


