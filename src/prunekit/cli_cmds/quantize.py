"""`prunekit quantize MODEL --calib-batches N --out DIR`: int8 after pruning, with the before/int8 table.

DIR gets model.int8.onnx (the int8 artifact; onnxruntime runs it, no pickle involved), model.fp32.onnx
(the float graph it was made from), report.json and report.md. The torchao backend keeps its int8 model in
memory only: it is measured and reported, and rebuilt by loading the float model and quantizing again.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from ..data import dataset_info
from ..quantize import QuantizeConfig, quantize_model
from ..quantize.compare import float_latency, int8_metrics
from ..quantize.config import BACKENDS, CALIBRATIONS, METHODS
from ..report import write_report
from ..train.evaluation import evaluate
from ..workflow import prepare_output_dir, removed_on_failure
from .argtypes import float_between, int_between
from .common import add_data_args, build_loaders, measure_model, print_table
from .export import add_model_input_arguments, load_with_example

# Calibration and evaluation batches come from the training and test splits of the data set flags.


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    add_model_input_arguments(p)
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--method", choices=METHODS, default="auto", help="auto: static for CNNs, dynamic otherwise")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--calib-batches", type=int_between(1), default=8, help="training batches that calibrate")
    p.add_argument("--calibration", choices=CALIBRATIONS, default="minmax")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default per channel)")
    p.add_argument("--reduce-range", choices=("auto", "on", "off"), default="auto",
                   help="onnxruntime: 7-bit weights (on), 8-bit (off); auto: on for x86 CPUs without VNNI, "
                        "whose uint8 x int8 kernels can saturate")
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm layers unfolded")
    p.add_argument("--qat-epochs", type=int_between(0), default=0, help="fake-quant fine-tuning epochs (0: PTQ)")
    p.add_argument("--qat-steps", type=int_between(1), default=None, help="optimizer steps per QAT epoch (cap)")
    p.add_argument("--qat-lr", type=float_between(0.0, lo_open=True), default=1e-3)
    p.add_argument("--eval-batches", type=int_between(0), default=None,
                   help="test batches for accuracy (default: the whole test split; 0: no accuracy)")
    p.add_argument("--latency-runs", type=int_between(0), default=20, help="timed runs per batch size (0: none)")
    p.add_argument("--threads", type=int_between(1), default=1, help="threads for the latency measurements")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    add_data_args(p)


def config_from_args(args: argparse.Namespace):
    """The QuantizeConfig the flags describe."""
    return QuantizeConfig(method=args.method, backend=args.backend, calib_batches=args.calib_batches,
                          calibration=args.calibration, per_channel=not args.per_tensor,
                          reduce_range={"auto": None, "on": True, "off": False}[args.reduce_range],
                          fold_bn=not args.no_fold_bn, qat_epochs=args.qat_epochs, qat_steps=args.qat_steps,
                          qat_lr=args.qat_lr, seed=args.seed)


def _model_image_size(args: argparse.Namespace, example) -> int | None:
    """The square image size the model was trained at when it differs from the data set's own (a run made with
    --input-size resizes its images): calibration and evaluation images are resized to it the same way."""
    if not (isinstance(example, torch.Tensor) and example.dim() == 4 and example.shape[-1] == example.shape[-2]):
        return None
    size = int(example.shape[-1])
    return None if tuple(dataset_info(args.dataset, args.data_dir).image_size) == (size, size) else size


def cmd_quantize(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = prepare_output_dir(Path(args.out), overwrite=args.overwrite, protect=[args.model], create=False)
    with removed_on_failure(out):  # a failed run leaves nothing that would block its retry
        out.mkdir(parents=True, exist_ok=True)
        return _quantize(args, cfg, out)


def _quantize(args: argparse.Namespace, cfg: QuantizeConfig, out: Path) -> int:
    model, example = load_with_example(args)
    size = _model_image_size(args, example)  # the model's own input size (quantize has no --input-size)
    info, loaders = build_loaders(args, image_size=size)
    test = None if args.eval_batches == 0 else (
        loaders.test if args.eval_batches is None else list(itertools.islice(loaders.test, args.eval_batches)))
    res = quantize_model(model, cfg, loaders.train, example_inputs=example, out=out, overwrite=args.overwrite)
    batches = (1, 64) if args.latency_runs else ()
    before = measure_model(model, example, args.latency_runs, batches or (1,), threads=args.threads)
    if test is not None:
        before["top1"] = float(evaluate(model, test)["top1"])
    if batches:
        before["latency_by_runtime"] = float_latency(model, example, batches, args.latency_runs, args.threads)
    int8 = int8_metrics(res, example, test, batches, max(args.latency_runs, 1), args.threads) if batches else \
        int8_metrics(res, example, test, (1,), 1, args.threads)
    report = {"model": {"name": type(model).__name__, "source": str(args.model)},
              "data": {"dataset": info.name, "image_size": size},
              "method": {"name": "quantize", **cfg.to_dict()}, "quantize": res.to_dict(),
              "metrics": {"before": before, "after": None, "int8": int8}}
    write_report(out, report)
    rows = [("int8 file", str(res.onnx_path) if res.onnx_path else "(torchao model, in memory)"),
            ("method / backend", f"{res.method} / {res.backend}"),
            ("size float -> int8", f"{res.fp32_size_bytes:,} B -> {res.size_bytes:,} B"),
            ("BatchNorms folded", str(len(res.folded))), ("calibration batches", str(res.calib_batches))]
    if test is not None:
        rows.append(("top-1 float -> int8", f"{100 * before['top1']:.2f}% -> {100 * int8['top1']:.2f}%"))
    print_table(f"prunekit quantize -> {out}", rows)
    return 0
