"""`prunekit export MODEL --format onnx --out f.onnx`: ONNX with a dynamic batch, checked in onnxruntime."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data import dataset_info
from ..io import read_description
from ..quantize import QuantizeError, export
from ..report import format_bytes
from ..workflow import check_output_file
from .argtypes import float_between, int_between
from .common import CliError, load_model_with_shape, print_table, read_json

FORMATS = ("onnx",)


def input_shape(text: str) -> tuple[int, ...]:
    """'1,28,28' -> (1, 28, 28): the per-sample input shape (without the batch dimension)."""
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated sizes such as 1,28,28") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be an integer >= 1")
    return dims


def add_model_input_arguments(p: argparse.ArgumentParser) -> None:
    """MODEL and --input-shape, shared with `prunekit quantize`."""
    p.add_argument("model", help="a saved model (.safetensors), a run folder, or a compressed file (.pkz)")
    p.add_argument("--input-shape", type=input_shape, default=None, metavar="C,H,W",
                   help="per-sample input shape (default: the one recorded with the model)")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    add_model_input_arguments(p)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="output format (onnx)")
    p.add_argument("--out", "-o", required=True, help="file to write (.onnx)")
    p.add_argument("--atol", type=float_between(0.0), default=1e-4,
                   help="largest allowed |PyTorch - onnxruntime| output difference (exit 1 above it)")
    p.add_argument("--opset", type=int_between(13, 23), default=17)
    p.add_argument("--batches", nargs="+", type=int_between(1), default=[1, 64],
                   help="batch sizes timed in onnxruntime")
    p.add_argument("--runs", type=int_between(1), default=20, help="timed onnxruntime runs per batch size")
    p.add_argument("--threads", type=int_between(1), default=None, help="onnxruntime intra-op threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def load_with_example(args: argparse.Namespace):
    """(model, example input of batch 1) from MODEL and --input-shape (or the shape saved with the model)."""
    model, shape = load_model_with_shape(args.model)
    if args.input_shape is not None:
        shape = list(args.input_shape)
    if shape is None:
        shape = _saved_shape(Path(args.model)) or _report_shape(Path(args.model))
    if shape is None:
        raise CliError(f"{args.model} records no input shape; pass --input-shape C,H,W")
    return model.cpu().eval(), torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))


def _saved_shape(path: Path) -> list[int] | None:
    """The input_shape a prunekit.save file keeps in its description's extras, when there is one."""
    file = path / "model.safetensors" if path.is_dir() else path
    if file.suffix != ".safetensors" or not file.is_file():
        return None
    return (read_description(file).get("extra") or {}).get("input_shape")


def _report_shape(path: Path) -> list[int] | None:
    """(C, H, W) of a run folder's report.json: the model's in_channels and its input_size (a run's
    --input-size), else the data set's image size."""
    file = (path if path.is_dir() else path.parent) / "report.json"
    if not file.is_file():
        return None
    report = read_json(file, "report.json (read for the model's input shape; or pass --input-shape)")
    if not isinstance(report, dict):
        return None
    model = report.get("model") or {}
    channels, dataset = model.get("in_channels"), (report.get("data") or {}).get("dataset")
    if channels and model.get("input_size"):
        return [int(channels), int(model["input_size"]), int(model["input_size"])]
    if not channels or not dataset:
        return None
    return [int(channels), *dataset_info(dataset).image_size]


def cmd_export(args: argparse.Namespace) -> int:
    check_output_file(Path(args.out), overwrite=args.overwrite, protect=[args.model], flag="--out")
    model, example = load_with_example(args)
    try:
        res = export(model, example, args.out, opset=args.opset, atol=args.atol, overwrite=args.overwrite,
                     latency_batches=args.batches, runs=args.runs, threads=args.threads, strict=False)
    except QuantizeError as e:
        raise CliError(str(e)) from e
    rows = [("file", str(res.path)), ("size", f"{res.size_bytes:,} B ({format_bytes(res.size_bytes)})"),
            ("inputs", ", ".join(res.input_names) + f" (dynamic batch; checked at {res.checked_batches})"),
            ("max |PyTorch - onnxruntime|", f"{res.max_abs_diff:.3g} (atol {res.atol:g})")]
    rows += [(f"onnxruntime latency, batch {b}", f"{ms:.3f} ms") for b, ms in res.latency_ms.items()]
    if res.conv_layout is not None and res.conv_layout.convs:
        rows.append(("convolutions in onnxruntime's blocked layout",
                     f"{res.conv_layout.blocked} of {res.conv_layout.convs}"))
    print_table(f"prunekit export -> {res.path}", rows)
    if res.layout_hint:
        print(f"prunekit export: note: {res.layout_hint}")
    if not res.passed:
        print(f"prunekit export: error: onnxruntime differs from PyTorch by {res.max_abs_diff:.3g} > --atol "
              f"{res.atol:g} ({res.path} kept for inspection)")
        return 1
    return 0
