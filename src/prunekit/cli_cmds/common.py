"""Helpers shared by the `prunekit` subcommands: the user-error type, argument groups (every number
range-checked, see argtypes), the data loaders of `train`, and re-exports of the workflow's model helpers."""
from __future__ import annotations

import argparse
import contextlib
import re
from typing import Any, Callable, Iterator, Mapping

import yaml

from ..data import DatasetInfo, Loaders, dataset_info, get_loaders
from ..report.console import metric_rows, print_table  # noqa: F401  (re-exported for the subcommands)
from ..workflow.models import (MODEL_FILE, example_input, load_model, load_model_with_shape,  # noqa: F401
                               looks_like_path, measure_model, model_kwargs, read_json, save_model)
from . import argtypes as T


class CliError(Exception):
    """A user error: printed as one message, exit status 2."""


class YamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads exponent numbers the way YAML 1.2 does: PyYAML follows YAML 1.1, where
    `1e-3` and `2.0e4` (no dot, or no exponent sign) are strings, so `lr: 1e-3` would reach a config as text."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def key_values(items: list[str], flag: str) -> dict[str, Any]:
    """Repeated ``flag KEY=VALUE`` options as {key: YAML value} (``-`` in a key reads as ``_``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = yaml.load(value, Loader=YamlLoader)
        except yaml.YAMLError as e:
            raise CliError(f"{flag} {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out


def given_options(args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None]) -> set[str]:
    """The dests of the options given on the command line (`args._argv`, set by `prunekit.cli.main`), even
    those given their default value (`--quantile 0.05`), so that an option the command would not read can be
    refused; without a command line (a namespace built in code), the options whose value is not the default.

    Args:
        args: the parsed namespace.
        add_arguments: the subcommand's `add_<name>_arguments`, which declares its options.
    """
    probe = argparse.ArgumentParser(add_help=False)
    add_arguments(probe)
    argv = getattr(args, "_argv", None)
    if argv is None:
        return {a.dest for a in probe._actions if getattr(args, a.dest, a.default) != a.default}
    for action in probe._actions:
        action.default = argparse.SUPPRESS  # only the options that were parsed land in the namespace
    return set(vars(probe.parse_known_args(argv)[0]))


def add_model_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--model, --num-classes, --in-channels, --width, --input-size."""
    p.add_argument("--model", required=required, help="registered model name or torchvision:<name>")
    p.add_argument("--num-classes", type=T.num_classes, default=None, help="default: the data set's (>= 2)")
    p.add_argument("--in-channels", type=T.positive_int, default=None, help="default: the data set's")
    p.add_argument("--width", type=T.positive_float, default=1.0, help="width multiplier (> 0)")
    p.add_argument("--input-size", type=T.positive_int, default=None, help="image side (default: data set or model's)")


def add_data_args(p: argparse.ArgumentParser, default: str = "fashion-mnist") -> None:
    """--dataset, --data-dir, --val-size, --subset, --batch-size, --workers, --augment, --seed."""
    p.add_argument("--dataset", default=default, help="fashion-mnist, digits, cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder holding the data set's files (the only place read)")
    p.add_argument("--val-size", type=T.count_or_fraction, default=None,
                   help="validation count or fraction (0 = none)")
    p.add_argument("--subset", type=T.positive_int, default=None, help="at most this many samples per split")
    p.add_argument("--batch-size", type=T.positive_int, default=128)
    p.add_argument("--workers", type=T.nonneg_int, default=0, help="DataLoader worker processes")
    p.add_argument("--augment", action="store_true", help="random crop (pad 4) and horizontal flip (seeded)")
    p.add_argument("--seed", type=T.nonneg_int, default=0)


def add_output_args(p: argparse.ArgumentParser, default: str, help_text: str = "output folder") -> None:
    """--out and --overwrite (an earlier run in --out is never replaced without it)."""
    p.add_argument("--out", default=default, help=f"{help_text} (default {default})")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")


_FROM_ARGS = object()


def build_loaders(args: argparse.Namespace, distributed: bool = False, image_size: Any = _FROM_ARGS
                  ) -> tuple[DatasetInfo, Loaders]:
    """(DatasetInfo, Loaders) from the data arguments; images resized to `image_size` (default: the command's
    --input-size, where it has one; None: the data set's own size)."""
    size = getattr(args, "input_size", None) if image_size is _FROM_ARGS else image_size
    info = dataset_info(args.dataset, args.data_dir, size)
    loaders = get_loaders(args.dataset, args.batch_size, data_dir=args.data_dir, val_size=args.val_size,
                          seed=args.seed, subset=args.subset, augment=args.augment, num_workers=args.workers,
                          image_size=size, distributed=distributed)
    return info, loaders


@contextlib.contextmanager
def in_flags(words: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a ValueError / TypeError of the library whose message names its keywords (`strict=False`,
    `remove=3`) as a CliError naming the command's flags instead (`--best-effort`, `--remove-blocks 3`).

    Args:
        words: regular expression -> replacement, applied in order; an error none of them matches passes
            through unchanged.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        text = str(e)
        worded = text
        for pattern, flag in words.items():
            worded = re.sub(pattern, flag, worded)
        if worded == text:
            raise
        raise CliError(worded) from e
