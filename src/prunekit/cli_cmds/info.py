"""`prunekit info`: parameters, MACs, latency and size of a registered model, a saved model or a checkpoint."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from ..models import create, default_input_size, get_entry, spec_of
from ..transformers.hf_modules import is_hf_model
from . import argtypes as T
from .common import (CliError, example_input, given_options, load_model_with_shape, looks_like_path, measure_model,
                     metric_rows, model_kwargs, print_table)

# Options read only while timing latency: refused with --runs 0 (which skips timing) rather than ignored
TIMING_ONLY = ("batches", "threads", "device")


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="registered model name, torchvision:<name>, or a saved model / checkpoint path")
    p.add_argument("--num-classes", type=T.num_classes, default=None, help="registry models: classes (default 10)")
    p.add_argument("--width", type=T.positive_float, default=None, help="registry models: width multiplier")
    p.add_argument("--in-channels", type=T.positive_int, default=None, help="input channels (default: recorded)")
    p.add_argument("--input-size", type=T.positive_int, default=None, help="image side (default: recorded)")
    p.add_argument("--batches", type=T.positive_int, nargs="+", default=[1, 64], help="latency batch sizes")
    p.add_argument("--runs", type=T.nonneg_int, default=30, help="timed runs per latency (0 = skip latency)")
    p.add_argument("--threads", type=T.positive_int, default=None, help="torch threads while timing")
    p.add_argument("--device", type=T.device, default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_info(args: argparse.Namespace) -> int:
    if args.runs == 0:
        unread = [f"--{k}" for k in TIMING_ONLY if k in given_options(args, add_info_arguments)]
        if unread:
            raise CliError(f"{', '.join(unread)}: read only while timing latency, and --runs 0 skips timing (an "
                           "option this command would not read is refused, not ignored); drop it or give --runs N")
    shape = None
    if Path(args.target).exists():
        given = [f for f, v in (("--num-classes", args.num_classes), ("--width", args.width)) if v is not None]
        if given:
            raise CliError(f"{' and '.join(given)} size a registry model; {args.target} is a saved model whose "
                           "architecture is recorded in the file")
        model, shape = load_model_with_shape(args.target)
    elif looks_like_path(args.target):
        raise CliError(f"no such file: {args.target}")
    else:
        get_entry(args.target)  # unknown names list the valid ones
        name = args.target
        channels = args.in_channels or (1 if default_input_size(name) == 28 else 3)
        model = create(name, **model_kwargs(name, args.num_classes or 10, channels, args.width or 1.0,
                                            args.input_size))
    if is_hf_model(model):  # token inputs, not images: its run's report.json holds the transformer's metrics
        raise CliError(f"{args.target} holds a transformers {type(model).__name__}; prunekit info measures image "
                       "models (the report.json of a prunekit prune --model hf: run has its params, MACs, latency)")
    spec = spec_of(model)
    kw = spec.kwargs if spec else {}
    channels = args.in_channels or (shape[0] if shape else kw.get("in_channels", 3))
    size = args.input_size or (shape[1:] if shape else None) or kw.get("input_size") or (
        default_input_size(spec.name) if spec else 224)
    try:
        metrics = measure_model(model, example_input(channels, size), args.runs, args.batches, args.device,
                                args.threads)
    except RuntimeError as e:  # torch's shape error, when the input options do not fit a saved model
        given = [f"{f} {v}" for f, v in (("--in-channels", args.in_channels), ("--input-size", args.input_size)) if v]
        if not given or not Path(args.target).exists():
            raise
        raise CliError(_misfit(model, args.target, given, list(example_input(channels, size).shape), shape, e)) from e
    result = {"model": spec.to_dict() if spec else {"name": type(model).__name__},
              "input_shape": list(example_input(channels, size).shape), **metrics}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(f"{result['model']['name']}  input {tuple(result['input_shape'])}", metric_rows(metrics))
    return 0


def _misfit(model: nn.Module, target: str, given: list[str], tried: list[int], recorded: list[int] | None,
            error: Exception) -> str:
    """The message for a saved model that fails on the input the options describe: the options, the input
    tried, what the model expects (the first convolution's in_channels, the recorded input shape) and torch's
    first line."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, convs)), None)
    linear = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    wants = []
    if conv is not None:
        wants.append(f"its first convolution {conv[0]} takes {conv[1].in_channels} channel(s)")
    elif linear is not None:
        wants.append(f"its first Linear {linear[0]} takes {linear[1].in_features} features (channels x height x "
                     "width)")
    if recorded:
        wants.append(f"it records the input shape {list(recorded)}")
    return (f"{' / '.join(given)}: {target} does not run on an input of shape {tried}"
            + (f"; {', and '.join(wants)}" if wants else "") + f" (torch: {str(error).splitlines()[0][:200]})")
