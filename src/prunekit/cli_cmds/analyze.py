"""`prunekit analyze`: per channel group, its width, the share of MACs and parameters that scale with its
channels, and its SRR structural redundancy; a rich table, analysis.json and a bar chart (analyze.png)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data import dataset_info
from ..models import create, spec_of
from ..report.analysis import analyze_model, plot_analysis
from ..report.console import print_analysis
from ..utils import atomic_write
from ..workflow import prepare_output_dir
from . import argtypes as T
from .common import CliError, add_model_args, add_output_args, example_input, load_model_with_shape, model_kwargs


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--dataset", default="fashion-mnist", help="sets classes, channels and image size")
    p.add_argument("--data-dir", default=None, help="only needed for imagefolder")
    p.add_argument("--checkpoint", default=None, help="trained model (saved model, run folder or .pt)")
    p.add_argument("--gamma", type=T.positive_float, default=None,
                   help="SRR edge threshold on distance/sqrt(length) (default: a quantile of all distances)")
    p.add_argument("--quantile", type=T.open_fraction, default=0.05,
                   help="SRR scale-free threshold: quantile of distances, in (0, 1)")
    add_output_args(p, "runs/analyze", "folder for analysis.json and analyze.png")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_model(args: argparse.Namespace):
    """(model, example input) from --checkpoint or --model, sized by the data set."""
    info = dataset_info(args.dataset, args.data_dir, args.input_size)
    if args.checkpoint:
        model, shape = load_model_with_shape(args.checkpoint)
        spec = spec_of(model)
        if args.model and spec is not None and spec.name != args.model:
            raise CliError(f"--checkpoint {args.checkpoint} holds a {spec.name}, not the --model {args.model}; "
                           "drop --model or give a checkpoint of that architecture")
        if shape:
            return model, example_input(shape[0], tuple(shape[1:]))
    elif args.model:
        kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                          args.width, args.input_size or info.image_size[0])
        model = create(args.model, **kw)
    else:
        raise CliError("give --model NAME or --checkpoint PATH")
    return model, example_input(args.in_channels or info.in_channels, args.input_size or info.image_size)


def cmd_analyze(args: argparse.Namespace) -> int:
    out = prepare_output_dir(Path(args.out), overwrite=args.overwrite, create=False,
                             protect=[args.checkpoint] if args.checkpoint else [])
    model, example = build_model(args)
    rows = analyze_model(model.eval(), example, args.gamma, args.quantile)
    atomic_write(out / "analysis.json", json.dumps(rows, indent=2) + "\n", overwrite=True)
    png = plot_analysis(rows, out / "analyze.png")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        name = args.checkpoint or args.model
        print_analysis(rows, f"{name}: {len(rows)} channel groups, input {tuple(example.shape)}")
        print(f"chart: {png}")
    return 0
