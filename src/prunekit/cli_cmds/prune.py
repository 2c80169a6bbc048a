"""`prunekit prune`: train (or load, or reuse a cached) base model, prune it with a method, recover, measure
before and after, save the pruned model and write report.json / report.md / plots.

Flags or a YAML recipe (`--recipe file.yaml`): recipe keys are flag names (`target-macs: 0.5` or
`target_macs: 0.5`); keys that are no flag go to the method (`every: 20`, `rho: 0.05`). Flags given on the
command line win over the recipe. Top-level imports stay light.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

METHOD_CHOICES = ("oneshot", "iterative", "coarse", "admm", "slimming", "group_lasso", "srr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_data_args, add_model_args
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--recipe", default=None, help="YAML file of flag values (and extra method arguments)")
    p.add_argument("--method", default="oneshot", help=f"one of {', '.join(METHOD_CHOICES)}")
    p.add_argument("--criterion", default=None, help="l1, l2, bn_scale, taylor, apoz, mean_activation, fpgm, "
                                                    "hrank, obd, random (default: the method's)")
    p.add_argument("--policy", default=None, help="uniform, global, width, srr (default: the method's)")
    p.add_argument("--target-macs", type=float, default=None, help="fraction of MACs to keep, e.g. 0.5")
    p.add_argument("--target-params", type=float, default=None, help="fraction of parameters to keep")
    p.add_argument("--target-latency", type=float, default=None,
                   help="fraction of the dense latency measured here (batch of the example input; --policy auto)")
    p.add_argument("--target-size", type=float, default=None, help="fraction of the file size (--policy auto)")
    p.add_argument("--ratio", type=float, default=None, help="fraction of channels to remove (no target)")
    p.add_argument("--ignore", action="append", default=[], metavar="NAME",
                   help="module name or state_dict key to leave untouched (repeatable)")
    p.add_argument("--heads", action="store_true", help="remove whole attention heads instead of head_dim")
    p.add_argument("--round-to", type=int, default=1, help="keep channel counts multiples of N")
    p.add_argument("--min-channels", type=int, default=1)
    p.add_argument("--max-ratio", type=float, default=0.9, help="at most this fraction of a group is removed")
    p.add_argument("--epochs", type=int, default=10, help="base training epochs (when no --base is given)")
    p.add_argument("--lr", type=float, default=0.1, help="base training learning rate (SGD)")
    p.add_argument("--base", default=None, help="trained base model (saved model, run folder or .pt)")
    p.add_argument("--cache-dir", default=None, help="where trained bases are cached (default ~/.cache/prunekit)")
    p.add_argument("--no-cache", action="store_true", help="always train the base afresh")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap for quick runs")
    p.add_argument("--score-batches", type=int, default=8, help="batches read by data-driven criteria")
    p.add_argument("--distill", action="store_true", help="fine-tune with distillation from the base")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--from-scratch", action="store_true", help="train the pruned architecture from scratch")
    p.add_argument("--scratch-epochs", type=int, default=None)
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra method argument (YAML value), e.g. every=20, rho=0.05; repeatable")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per latency (0: skip)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", default="runs/prune")
    p.add_argument("--no-progress", action="store_true")


# ----------------------------------------------------------------------------- recipe
def apply_recipe(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> dict[str, Any]:
    """Fill args from --recipe (flags set on the command line win); returns the extra method arguments."""
    import yaml
    extra = {}
    for item in args.method_arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--method-arg {item!r}: expected KEY=VALUE")
        extra[key.strip().replace("-", "_")] = yaml.safe_load(value)
    if not args.recipe:
        return extra
    data = yaml.safe_load(Path(args.recipe).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{args.recipe}: a recipe is a mapping of flag names to values")
    recipe_extra = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest in ("recipe", "func", "command"):
            continue
        if dest in parser_defaults:
            if getattr(args, dest) == parser_defaults[dest]:
                setattr(args, dest, value)
        else:
            recipe_extra[dest] = value
    return {**recipe_extra, **extra}


# ----------------------------------------------------------------------------- base model
def cache_root(cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunekit" / "bases"


def base_key(desc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def get_base(model_name: str, kw: dict[str, Any], loaders, data_desc: dict[str, Any], epochs: int, lr: float,
             seed: int, base: str | None = None, cache_dir: str | None = None, use_cache: bool = True,
             max_steps: int | None = None, device=None, progress: bool = True, log=print):
    """(trained base model, info dict): loaded from `base`, from the cache, or trained (then cached)."""
    import torch

    from ..models import create
    from ..train import TrainConfig, Trainer
    from .common import load_model
    t0 = time.perf_counter()
    if base:
        return load_model(base).cpu(), {"source": str(base), "time_s": time.perf_counter() - t0}
    desc = {"model": model_name, "kwargs": kw, "data": data_desc, "epochs": epochs, "lr": lr, "seed": seed,
            "max_steps": max_steps, "v": 1}
    folder = cache_root(cache_dir) / f"{model_name}-{base_key(desc)}"
    weights = folder / "model.pt"
    if use_cache and weights.exists():
        model = create(model_name, **kw)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        info = json.loads((folder / "base.json").read_text())
        log(f"base: reusing {folder} (trained {info.get('epochs')} epochs in {info.get('train_s', 0):.0f} s)")
        return model, {**info, "source": str(folder), "cached": True, "time_s": time.perf_counter() - t0}
    torch.manual_seed(seed)
    model = create(model_name, **kw)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, max_steps_per_epoch=max_steps, progress=progress)
    log(f"base: training {model_name} for {epochs} epoch(s)")
    result = Trainer(model, loaders.train, loaders.val, cfg, device=device, log=log).fit()
    model = model.cpu()
    train_s = time.perf_counter() - t0
    info = {**desc, "train_s": train_s, "history": result.history}
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".model.pt.{os.getpid()}"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, weights)
        (folder / "base.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return model, {**info, "source": "trained", "cached": False, "time_s": train_s}


# ----------------------------------------------------------------------------- measuring and reporting
def measure(model, example, test_loader, latency_runs: int, device=None) -> dict[str, Any]:
    from ..train import evaluate
    from .common import measure_model
    m = measure_model(model.cpu().eval(), example, latency_runs, batches=(1, 64) if latency_runs else ())
    scores = evaluate(model, test_loader, device)
    model.cpu()
    m.update(top1=scores["top1"], top5=scores["top5"], loss=scores["loss"])
    return m


def before_after_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    from ..report import format_bytes, format_count

    def pct(a, b):
        return f"{100 * a / b:.1f}%" if a is not None and b else "-"

    rows = [("top-1 accuracy", f"{100 * before['top1']:.2f}%", f"{100 * after['top1']:.2f}%",
             f"{100 * (after['top1'] - before['top1']):+.2f} pts")]
    for key, fmt in (("params", format_count), ("macs", format_count), ("size_bytes", format_bytes)):
        rows.append((key.replace("_bytes", "").replace("macs", "MACs"), fmt(before[key]), fmt(after[key]),
                     pct(after[key], before[key])))
    for b in sorted(set(before.get("latency") or {}) & set(after.get("latency") or {}), key=int):
        lb, la = before["latency"][b]["median_ms"], after["latency"][b]["median_ms"]
        rows.append((f"CPU latency, batch {b}", f"{lb:.2f} ms", f"{la:.2f} ms", f"{lb / la:.2f}x faster"))
    return rows


def print_before_after(title: str, rows) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c, j in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(c, justify=j)
    for r in rows:
        t.add_row(*r)
    Console().print(t)


def write_outputs(out: Path, report: dict[str, Any], base_widths: dict[str, int], pruned_widths: dict[str, int],
                  method: str, history: list[dict[str, Any]]) -> list[str]:
    from ..report import plot_before_after, plot_layer_widths, plot_training_curve, write_report
    plots = [plot_before_after(report, out / "before_after.png").name,
             plot_layer_widths(base_widths, {method: pruned_widths}, out / "layer_widths.png").name]
    if history:
        plots.append(plot_training_curve(history, out / "finetune_curve.png").name)
    write_report(out, {**report, "plots": plots})
    return plots


def save_pruned(model, path: Path, plan, spec) -> str | None:
    """pk.save with the plan on the original architecture (where prunekit.io exists); None otherwise."""
    from .common import maybe_import
    io = maybe_import("prunekit.io")
    if io is None:
        return None
    recorded = getattr(model, getattr(io, "PLANS_ATTR", "_prunekit_plans"), None)
    kwargs = {"arch": spec.to_dict()} if spec is not None else {}
    return str(io.save(model, path, plan=None if recorded else plan, overwrite=True, **kwargs))


# ----------------------------------------------------------------------------- the pipeline
def method_kwargs(args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    from ..policies import Target
    kw: dict[str, Any] = dict(extra)
    t = {k: v for k, v in (("macs", args.target_macs), ("params", args.target_params),
                           ("latency", getattr(args, "target_latency", None)),
                           ("size", getattr(args, "target_size", None))) if v is not None}
    if t:
        kw["target"] = Target(**t)
    elif args.ratio:
        kw["ratio"] = args.ratio
    else:
        raise ValueError("give --target-macs, --target-params, --target-latency, --target-size or --ratio")
    if args.criterion:
        kw["criterion"] = args.criterion
    if args.policy:
        kw["policy"] = args.policy
    kw.update(finetune_epochs=args.finetune_epochs, lr=args.finetune_lr, distill=args.distill,
              temperature=args.temperature, distill_weight=args.distill_weight, from_scratch=args.from_scratch,
              scratch_epochs=args.scratch_epochs, max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed,
              min_channels=args.min_channels, max_ratio=args.max_ratio, device=args.device)
    trace_kw: dict[str, Any] = {}
    if getattr(args, "ignore", None):
        trace_kw["ignore"] = list(args.ignore)
    if getattr(args, "heads", False):
        trace_kw["heads"] = True
    if getattr(args, "round_to", 1) > 1:
        trace_kw["round_to"] = args.round_to
    if trace_kw:
        kw["trace_kw"] = {**trace_kw, **kw.get("trace_kw", {})}
    if not args.no_progress:
        kw["log"] = print  # one line per fine-tuning epoch
    if args.method in ("oneshot", "iterative", "srr"):
        kw.setdefault("score_batches", args.score_batches)
    return kw


def pipeline(args: argparse.Namespace, extra: dict[str, Any] | None = None, analyze_first: bool = False,
             log=print, data=None) -> dict[str, Any]:
    """Base -> (analysis) -> method -> measurements -> saved model and report. Returns the report dict.
    data: (DatasetInfo, Loaders) to use instead of building them from the data flags."""
    from ..graph.trace import trace
    from ..methods import run_method
    from ..models import spec_of
    from .common import build_loaders, example_input, model_kwargs
    t_start = time.perf_counter()
    mkw = method_kwargs(args, extra or {})  # argument errors before any training
    timings: dict[str, float] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info, loaders = data if data is not None else build_loaders(args)
    h, w = info.image_size
    kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                      args.width, args.input_size or (h if h == w else None))
    data_desc = {"dataset": info.name, "data_dir": args.data_dir, "subset": args.subset, "seed": args.seed,
                 "batch_size": args.batch_size, "augment": args.augment, "val_size": args.val_size}
    if args.base:
        from .common import load_model
        spec = spec_of(load_model(args.base))
        kw = dict(spec.kwargs) if spec is not None else kw
    model, base_info = get_base(args.model, kw, loaders, data_desc, args.epochs, args.lr, args.seed, args.base,
                                args.cache_dir, not args.no_cache, args.max_steps_per_epoch, args.device,
                                not args.no_progress, log)
    timings["base"] = base_info["time_s"]
    example = example_input(kw["in_channels"], info.image_size)
    t0 = time.perf_counter()
    before = measure(model, example, loaders.test, args.latency_runs, args.device)
    timings["measure_before"] = time.perf_counter() - t0
    spec = spec_of(model)
    analysis = None
    if analyze_first:
        from .analyze import analyze_model, plot_analysis, print_analysis
        t0 = time.perf_counter()
        analysis = analyze_model(model.eval(), example)
        print_analysis(analysis, f"{args.model} (width {args.width}): channel groups before pruning")
        plot_analysis(analysis, out / "analyze.png")
        timings["analyze"] = time.perf_counter() - t0
    base_widths = {g.name: g.size for g in trace(model, example, **mkw.get("trace_kw", {})).prunable_groups()}
    t0 = time.perf_counter()
    name = args.method.replace("-", "_")
    pruned, rep = run_method(name, model, loaders.train, loaders.val, example, **mkw)
    timings["method"] = time.perf_counter() - t0
    for k, v in rep["timings"].items():
        timings[f"method.{k}"] = v
    t0 = time.perf_counter()
    after = measure(pruned, example, loaders.test, args.latency_runs, args.device)
    timings["measure_after"] = time.perf_counter() - t0
    plan = rep["plan"]
    saved = save_pruned(pruned, out / "model.safetensors", plan, spec)
    (out / "plan.json").write_text(plan.to_json(indent=1) + "\n")
    pruned_widths = {**base_widths, **{d.name: len(d.kept) for d in plan.decisions}}
    timings["total"] = time.perf_counter() - t_start
    hist = rep["history"].get("finetune") or rep["history"].get("scratch") or []
    method_desc = {"name": name, **{k: rep.get(k) for k in ("criterion", "policy")},
                   "target": {k: v for k, v in (("macs", args.target_macs), ("params", args.target_params),
                                                 ("latency", getattr(args, "target_latency", None)),
                                                 ("size", getattr(args, "target_size", None))) if v},
                   "ratio": args.ratio, "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
                   "distill": args.distill, "from_scratch": args.from_scratch, "extra": extra or {}}
    report = {"model": {"name": args.model, **kw}, "data": {**data_desc, "train": len(loaders.train.dataset),
                                                              "test": len(loaders.test.dataset)},
              "method": method_desc, "metrics": {"before": before, "after": after}, "timings": timings,
              "history": hist,
              "extra": {"base": {k: v for k, v in base_info.items() if k != "history"}, "widths": pruned_widths,
                        "base_widths": base_widths, "saved": saved, "analysis": analysis,
                        "method_report": {k: v for k, v in rep.items() if k not in ("plan", "history", "timings")}}}
    report["plots"] = write_outputs(out, report, base_widths, pruned_widths, name, hist)
    return report


def run(args: argparse.Namespace) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    extra = apply_recipe(args, defaults)
    if not args.model and not args.base:
        from .common import CliError
        raise CliError("give --model NAME (and --dataset), or --base PATH, or a recipe that names them")
    if not args.model:
        from .common import load_model
        from ..models import spec_of
        spec = spec_of(load_model(args.base))
        if spec is None:
            from .common import CliError
            raise CliError(f"{args.base}: cannot tell its registry model; pass --model")
        args.model = spec.name
    report = pipeline(args, extra)
    m = report["metrics"]
    print_before_after(f"{args.model} on {report['data']['dataset']}: {args.method} -> {args.out}",
                       before_after_rows(m["before"], m["after"]))
    t = report["timings"]
    print("time per phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if not k.startswith("method.")))
    return 0
