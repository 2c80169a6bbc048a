"""`prunekit analyze`: per channel group, its width, the share of MACs and parameters that scale with its
channels, and its SRR structural redundancy; a rich table, analysis.json (the rows and what they were computed
from) and a bar chart (analyze.png)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data import canonical_name, dataset_info
from ..data.provenance import file_record
from ..models import create, spec_of
from ..report.analysis import analyze_model, plot_analysis
from ..report.console import print_analysis
from ..utils import atomic_write
from ..workflow import prepare_output_dir
from ..workflow.models import EXAMPLE_SEED, model_file_of
from . import argtypes as T
from .common import (CliError, add_model_args, add_output_args, example_input, given_options, load_model_with_shape,
                     model_kwargs)

# The options that size a model built from --model: a --checkpoint is built already.
BUILD_OPTIONS = ("width", "num_classes")
# The options that give the example input's shape: a --checkpoint that records its input shape sets it.
SHAPE_OPTIONS = ("dataset", "data_dir", "in_channels", "input_size")


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--dataset", default="fashion-mnist", help="sets classes, channels and image size")
    p.add_argument("--data-dir", default=None, help="only read for imagefolder (its classes and image size)")
    p.add_argument("--checkpoint", default=None, help="trained model (saved model, run folder or .pt)")
    p.add_argument("--gamma", type=T.positive_float, default=None,
                   help="SRR edge threshold on distance/sqrt(length) (default: a quantile of all distances)")
    p.add_argument("--quantile", type=T.open_fraction, default=0.05,
                   help="SRR scale-free threshold: quantile of distances, in (0, 1); not read with --gamma")
    add_output_args(p, "runs/analyze", "folder for analysis.json and analyze.png")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _flags(dests: list[str], singular: str, plural: str) -> str:
    """'--width sizes' / '--width, --num-classes size': the flags named, with the verb in agreement."""
    return ", ".join("--" + d.replace("_", "-") for d in dests) + " " + (singular if len(dests) == 1 else plural)


def unread_options(args: argparse.Namespace, given: set[str], shape: list[int] | None) -> list[str]:
    """Messages for the options in `given` that this analysis would not read: the model-building options with
    --checkpoint, the shape options when the checkpoint records its input `shape`, --quantile with --gamma, and
    --data-dir for a data set other than imagefolder."""
    out = []
    build = [d for d in BUILD_OPTIONS if d in given]
    sizes = [d for d in SHAPE_OPTIONS if d in given]
    if args.checkpoint and build:
        out.append(f"{_flags(build, 'sizes', 'size')} a model built from --model; --checkpoint {args.checkpoint} is "
                   "built already")
    if args.checkpoint and shape and sizes:
        out.append(f"{_flags(sizes, 'sets', 'set')} the input shape; --checkpoint {args.checkpoint} records the one "
                   f"it was trained on, {tuple(shape)}")
    elif "data_dir" in given and args.data_dir is not None and canonical_name(args.dataset) != "imagefolder":
        out.append(f"--data-dir is read only for --dataset imagefolder; the shapes of {args.dataset} are fixed")
    if "quantile" in given and args.gamma is not None:
        out.append("--quantile sets gamma as a quantile of the distances; --gamma gives gamma itself")
    return out


def build_model(args: argparse.Namespace, given: set[str]) -> tuple[Any, Any, dict[str, Any]]:
    """(model, example input, what they were built from) from --checkpoint or --model, sized by the data set;
    options that would not be read are refused first."""
    source: dict[str, Any] = {"model": args.model, "checkpoint": None}
    shape = None
    if args.checkpoint:
        ckpt = model_file_of(args.checkpoint)
        model, shape = load_model_with_shape(args.checkpoint)
        spec = spec_of(model)
        if args.model and spec is not None and spec.name != args.model:
            raise CliError(f"--checkpoint {args.checkpoint} holds a {spec.name}, not the --model {args.model}; "
                           "drop --model or give a checkpoint of that architecture")
        if args.model and spec is None:
            raise CliError(f"--model {args.model}: --checkpoint {args.checkpoint} records no registry name to "
                           "check it against; drop --model")
        source["model"] = spec.name if spec is not None else type(model).__name__
        source["checkpoint"] = {"path": str(args.checkpoint), "file": str(ckpt), **file_record(ckpt)}
        del source["checkpoint"]["name"]  # "file" names it with its folder
    elif not args.model:
        raise CliError("give --model NAME or --checkpoint PATH")
    unread = unread_options(args, given, shape)
    if unread:
        raise CliError("; ".join(unread) + " (an option this analysis would not read is refused, not ignored)")
    if shape:
        source.update(dataset=None, input_from="checkpoint")
        return model, example_input(shape[0], tuple(shape[1:])), source
    info = dataset_info(args.dataset, args.data_dir, args.input_size)
    if not args.checkpoint:
        source["width"] = args.width
        kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                          args.width, args.input_size or info.image_size[0])
        model = create(args.model, **kw)
    source.update(dataset=info.name, input_from="--input-size" if args.input_size else "--dataset")
    return model, example_input(args.in_channels or info.in_channels, args.input_size or info.image_size), source


def cmd_analyze(args: argparse.Namespace) -> int:
    out = prepare_output_dir(Path(args.out), overwrite=args.overwrite, create=False,
                             protect=[args.checkpoint] if args.checkpoint else [])
    given = given_options(args, add_analyze_arguments)
    model, example, source = build_model(args, given)
    rows = analyze_model(model.eval(), example, args.gamma, args.quantile)
    # gamma None: the quantile of all pairwise distances sets it; the example only traces the shapes (its seed)
    analysis = {**source, "input_shape": list(example.shape[1:]), "example_seed": EXAMPLE_SEED,
                "gamma": args.gamma, "quantile": None if args.gamma is not None else args.quantile, "groups": rows}
    text = json.dumps(analysis, indent=2)
    atomic_write(out / "analysis.json", text + "\n", overwrite=True)
    png = plot_analysis(rows, out / "analyze.png")
    if args.json:
        print(text)
    else:
        name = args.checkpoint or args.model
        print_analysis(rows, f"{name}: {len(rows)} channel groups, input {tuple(example.shape)}")
        print(f"chart: {png}")
    return 0
