"""`prunekit prune`: parse the flags (or a YAML recipe) into a `WorkflowConfig` and run the library workflow
(base -> prune -> recover -> measure -> save -> report); print the before/after table.

Recipe keys are flag names (`target-macs: 0.5` or `target_macs: 0.5`); keys that are no flag go to the method
(`every: 20`, `rho: 0.05`), which rejects the ones it does not take. Flags given on the command line win over
the recipe. Recipe values are checked by the config dataclasses as flags are by argparse.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..quantize.compare import int8_table
from ..report.console import before_after_rows, print_before_after
from ..workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, QuantizeConfig, RecoverConfig, WorkflowConfig,
                        run_workflow, workflow_methods)
from ..workflow.config import SCORE_BATCHES_UNREAD, reads_score_batches
from . import argtypes as T
from .common import (CliError, YamlLoader, add_data_args, add_model_args, add_output_args, given_options, in_flags,
                     key_values)
from .prune_hf import add_hf_prune_arguments, hf_only_flags, is_hf, run_hf


def add_prune_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--recipe", default=None, help="YAML file of flag values (and extra method arguments)")
    p.add_argument("--method", default="oneshot",
                   help=f"one of {', '.join(workflow_methods())} (deep_compression: single weights, --ratio of "
                        "weights removed, writes model.pkz)")
    p.add_argument("--criterion", default=None, help="l1, l2, bn_scale, taylor, apoz, mean_activation, fpgm, "
                                                    "hrank, obd, random (default: the method's)")
    p.add_argument("--policy", default=None, help="uniform, global, width, srr, auto (default: the method's)")
    p.add_argument("--target-macs", type=T.keep_fraction, default=None, help="fraction of MACs to keep, e.g. 0.5")
    p.add_argument("--target-params", type=T.keep_fraction, default=None, help="fraction of parameters to keep")
    p.add_argument("--target-latency", type=T.keep_fraction, default=None,
                   help="fraction of the dense latency measured here (batch of the example input; --policy auto)")
    p.add_argument("--target-size", type=T.keep_fraction, default=None,
                   help="fraction of the state-dict bytes (--policy auto)")
    p.add_argument("--best-effort", action="store_true",
                   help="a target the guards cannot meet gives the most pruned plan with a warning, not an error "
                        "(with --ratio: a ratio that removes no channel gives the empty plan with a warning)")
    p.add_argument("--ratio", type=T.fraction, default=None, help="fraction of channels to remove, in [0, 1) (no target)")
    p.add_argument("--ignore", action="append", default=[], metavar="NAME",
                   help="module name or state_dict key to leave untouched (repeatable)")
    p.add_argument("--heads", action="store_true", help="remove whole attention heads instead of head_dim")
    p.add_argument("--round-to", type=T.positive_int, default=1, help="keep channel counts multiples of N (>= 1)")
    p.add_argument("--min-channels", type=T.positive_int, default=1, help="channels every group keeps (>= 1)")
    p.add_argument("--max-ratio", type=T.open_fraction, default=0.9,
                   help="at most this fraction of a group is removed, in (0, 1)")
    p.add_argument("--epochs", type=T.nonneg_int, default=10, help="base training epochs (when no --base is given)")
    p.add_argument("--lr", type=T.positive_float, default=0.1, help="base training learning rate (SGD)")
    p.add_argument("--base", default=None, help="trained base model (saved model, run folder or .pt)")
    p.add_argument("--cache-dir", default=None, help="where trained bases are cached (default ~/.cache/prunekit)")
    p.add_argument("--no-cache", action="store_true", help="always train the base afresh")
    p.add_argument("--finetune-epochs", type=T.nonneg_int, default=3)
    p.add_argument("--finetune-lr", type=T.positive_float, default=0.01)
    p.add_argument("--max-steps-per-epoch", type=T.positive_int, default=None, help="cap for quick runs")
    p.add_argument("--score-batches", type=T.positive_int, default=8, help="batches read by data-driven criteria")
    p.add_argument("--distill", action="store_true", help="fine-tune with distillation from the base")
    p.add_argument("--temperature", type=T.positive_float, default=4.0)
    p.add_argument("--distill-weight", type=T.float_between(0.0, 1.0), default=0.5)
    p.add_argument("--from-scratch", action="store_true", help="train the pruned architecture from scratch")
    p.add_argument("--scratch-epochs", type=T.nonneg_int, default=None)
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra method argument (YAML value), e.g. every=20, rho=0.05; repeatable")
    p.add_argument("--latency-runs", type=T.nonneg_int, default=30, help="timed runs per latency (0: skip)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 after recovery: model.int8.onnx and the int8 row of the report (see prunekit quantize)")
    p.add_argument("--calib-batches", type=T.positive_int, default=8, help="training batches calibrating --quantize")
    p.add_argument("--device", type=T.device, default=None, help="default: cuda when available, else cpu")
    add_output_args(p, "runs/prune")
    p.add_argument("--no-progress", action="store_true")
    add_hf_prune_arguments(p)


class _UniqueKeyLoader(YamlLoader):
    """The CLI's YAML loader (safe types, YAML 1.2 exponent numbers) that refuses a mapping naming one key
    twice (PyYAML keeps the last one silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_recipe(path: Path) -> dict[str, Any]:
    """The mapping a --recipe file holds: UTF-8 YAML (safe types only), every key once."""
    if not path.is_file():
        raise CliError(f"--recipe {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"--recipe {path}: not UTF-8 text (at byte offset {e.start}); a recipe is a YAML file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise CliError(f"{path}: not valid YAML{where} ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: a recipe is a mapping of flag names to values")
    return data


def apply_recipe(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> dict[str, Any]:
    """Fill args from --recipe (flags set on the command line win); returns the extra method arguments: the
    recipe's keys that are no flag, then its `method_arg` entries, then --method-arg (each later one wins)."""
    if not args.recipe:
        return key_values(args.method_arg, "--method-arg")
    path = Path(args.recipe)
    data = read_recipe(path)
    given = given_options(args, add_prune_arguments)
    recipe_extra = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest in ("recipe", "func", "command"):  # not settings: a recipe cannot name another recipe
            raise CliError(f"{path}: {key!r} is not a setting a recipe can hold")
        if dest == "method_arg" and isinstance(value, dict):  # method_arg: {key: value, ...}
            recipe_extra.update({str(k).replace("-", "_"): v for k, v in value.items()})
        elif dest in parser_defaults:
            if isinstance(parser_defaults[dest], list):  # a repeatable flag: one value is a list of one
                value = [value] if isinstance(value, str) else value
                if not isinstance(value, list):
                    raise CliError(f"{path}: {key!r} takes a name or a list of them, got {value!r}")
            if dest == "method_arg":  # merged with the command line's --method-arg below, never replaced
                recipe_extra.update(key_values([str(v) for v in value], f"{path}: method_arg"))
            elif dest not in given:
                setattr(args, dest, value)
                args._recipe_set = getattr(args, "_recipe_set", set()) | {dest}
        else:
            recipe_extra[dest] = value
    return {**recipe_extra, **key_values(args.method_arg, "--method-arg")}


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> WorkflowConfig:
    """The WorkflowConfig that the `prunekit prune` flags describe (validated: bad values raise ValueError)."""
    target = {k: v for k, v in (("macs", args.target_macs), ("params", args.target_params),
                                ("latency", args.target_latency), ("size", args.target_size)) if v is not None}
    return WorkflowConfig(
        model=ModelConfig(name=args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                          width=args.width, input_size=args.input_size),
        data=DataConfig(dataset=args.dataset, data_dir=args.data_dir, val_size=args.val_size, subset=args.subset,
                        batch_size=args.batch_size, workers=args.workers, augment=args.augment),
        base=BaseConfig(path=args.base, epochs=args.epochs, lr=args.lr, cache_dir=args.cache_dir,
                        use_cache=not args.no_cache),
        prune=PruneConfig(method=args.method, criterion=args.criterion, policy=args.policy, target=target,
                          ratio=args.ratio, ignore=list(args.ignore), heads=args.heads, round_to=args.round_to,
                          min_channels=args.min_channels, max_ratio=args.max_ratio,
                          score_batches=args.score_batches, strict=not args.best_effort,
                          options=dict(extra or {})),
        recover=RecoverConfig(finetune_epochs=args.finetune_epochs, lr=args.finetune_lr, distill=args.distill,
                              temperature=args.temperature, distill_weight=args.distill_weight,
                              from_scratch=args.from_scratch, scratch_epochs=args.scratch_epochs),
        quantize=QuantizeConfig(scheme=args.quantize, calib_batches=args.calib_batches) if args.quantize else None,
        seed=args.seed, device=args.device, max_steps_per_epoch=args.max_steps_per_epoch,
        latency_runs=args.latency_runs, out=args.out, overwrite=args.overwrite, progress=not args.no_progress)


# Planner keywords that error messages name (`pass strict=False ...`, `within min_channels=1, ...`) -> the flags
# that set them, for errors raised under `prunekit prune` (see common.in_flags); a dotted config path such as
# `prune.round_to=8` is left as it is
CHANNEL_FLAGS = {r"(?<![\w.])strict=False\b": "--best-effort", r"(?<![\w.])min_channels=": "--min-channels ",
                 r"(?<![\w.])max_ratio=": "--max-ratio ", r"(?<![\w.])round_to=": "--round-to "}


# Options read only together with another one: (dest, the flag(s) it needs, why), checked on the options set on
# the command line or in a recipe (even to their default value) so that none is dropped silently.
CONDITIONAL = (
    ("epochs", lambda a: not a.base, "trains the base; --base loads one that is not trained"),
    ("lr", lambda a: not a.base, "is the base's training rate; --base loads one that is not trained"),
    ("no_cache", lambda a: not a.base, "concerns the cached base; --base loads one from its path"),
    ("scratch_epochs", lambda a: a.from_scratch, "needs --from-scratch"),
    ("temperature", lambda a: a.distill, "needs --distill"),
    ("distill_weight", lambda a: a.distill, "needs --distill"),
    ("calib_batches", lambda a: a.quantize, "calibrates --quantize int8; give --quantize too"),
    ("score_batches", lambda a: reads_score_batches(a.method, a.criterion), SCORE_BATCHES_UNREAD),
)


def unread_flags(args: argparse.Namespace, given: set[str]) -> list[str]:
    """Messages for the options in `given` that this run would not read (see CONDITIONAL)."""
    return [f"--{dest.replace('_', '-')} {why}" for dest, used, why in CONDITIONAL
            if dest in given and not used(args)]


def cmd_prune(args: argparse.Namespace) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    add_prune_arguments(parser)
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    extra = apply_recipe(args, defaults)
    given = given_options(args, add_prune_arguments) | getattr(args, "_recipe_set", set())
    if is_hf(args):
        return run_hf(args, extra, defaults, given)
    unread = unread_flags(args, given)
    if unread:
        raise CliError("; ".join(unread) + " (an option this run would not read is refused, not ignored)")
    dropped = hf_only_flags(given)
    if dropped:  # the channel-pruning workflow reads none of them: refuse rather than ignore
        verb = "is" if len(dropped) == 1 else "are"
        raise CliError(f"{', '.join(dropped)} {verb} for --model hf:<model> only; {args.model or 'this model'} is "
                       "pruned by channels (--ratio or a --target-*), see prunekit prune --help")
    with in_flags(CHANNEL_FLAGS):  # the planner's keywords in its messages, said as this command's flags
        result = run_workflow(config_from_args(args, extra))
    report = result.report
    print_before_after(f"{report['model']['name']} on {report['data']['dataset']}: {result.config.prune.method} "
                       f"-> {args.out}", before_after_rows(result.before, result.after))
    if report["metrics"].get("int8"):
        print("\n".join(int8_table(report["metrics"])))
    t = report["timings"]
    print("time per phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if not k.startswith("method.")))
    return 0
