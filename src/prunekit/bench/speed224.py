"""The 224-px section of suite `speed` (`--opt section=224`): ImageNet-sized torchvision models, dense next to
prunekit's pruned model and Torch-Pruning's at the same MACs, timed in one run with the three alternated.

Every model carries random weights (weights do not change latency). prunekit prunes with one `run_workflow`
without data (oneshot, uniform l1, no fine-tuning) to the target (once with plain widths, once with widths
rounded to `round_to` channels, the hardware-friendly output); Torch-Pruning 1.6.1 prunes the dense model with uniform per-layer L1 (MagnitudeImportance(p=1),
local ranking), its pruning ratio bisected so that it keeps no more MACs than prunekit's plain model. Each
runtime gets the same models: torch eager and torch.compile on inference-prepared copies (BatchNorm folded,
channels-last, `pk.prepare_inference`), onnxruntime on the exported graph (it folds BatchNorm itself). Rows
(model, runtime, batch) are appended to rows.jsonl as they finish; `--resume` continues."""
from __future__ import annotations

import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..measure import count_macs, export_onnx
from ..surgery.inference import prepare_inference
from ..workflow import ModelConfig, PruneConfig, RecoverConfig, RunData, WorkflowConfig, run_workflow
from . import common, output, peer
from .config import BenchConfig, budget_not_read, opt_int
from .rows import SuiteRows
from .timing import alternate_times

# The speed suite (both sections) times models rebuilt from the other suites' widths or built at 224 px, with
# random weights: it trains nothing and reads no data, so only these settings are read; the CLI refuses the
# others and the Budget table marks them.
READS = ("archs", "targets", "latency_runs", "threads")

KEYS = ("model", "target", "runtime", "batch")
RUNTIMES = ("eager", "compile", "onnxruntime")
MODELS = ("resnet50", "mobilenet_v2", "vit_b_16")
PRESET_OPTS: dict[str, Any] = {"models": ["resnet50", "mobilenet_v2", "vit_b_16"], "runtimes": list(RUNTIMES),
                               "round_to": 16, "batches": [1, 16], "compile_batches": [16]}
# Which of the configured models / runtimes this invocation runs (default: all); not part of the rows' header,
# so that one configuration can be filled in over several runs of a few minutes each (--resume).
SELECT_OPTS = ("only_models", "only_runtimes")
VARIANTS = ("dense", "prunekit", "prunekit hw", "torch-pruning")


def _torchvision(name: str) -> nn.Module:
    import torchvision
    if name not in MODELS:
        raise ValueError(f"speed 224: unknown model {name!r}; valid: {', '.join(MODELS)}")
    torch.manual_seed(0)
    return getattr(torchvision.models, name)().eval()


def _tp_importance():
    import torch_pruning as tp
    return tp.importance.MagnitudeImportance(p=1)


def _tp_hooks(name: str) -> dict[str, Any]:
    """Torch-Pruning's own recipe for torchvision's ViT: attention widths in whole heads, and the model's
    hidden_dim attribute (read by its patch reshape) set to the pruned width afterwards."""
    if not name.startswith("vit"):
        return {}
    return {"setup": lambda m: {"channel_groups": {a: a.num_heads for a in m.modules()
                                                   if isinstance(a, nn.MultiheadAttention)}},
            "finish": lambda m: setattr(m, "hidden_dim", m.conv_proj.out_channels)}


def prune_random_init(name: str, dense: nn.Module, target: float, round_to: int, example: torch.Tensor) -> nn.Module:
    """A copy of `dense` pruned by one `run_workflow` without data (oneshot, uniform l1, no fine-tuning): the
    weights are random, so only the pruned architecture is timed."""
    cfg = WorkflowConfig(model=ModelConfig(name), prune=PruneConfig(method="oneshot", criterion="l1",
                                                                    policy="uniform", target={"macs": target},
                                                                    round_to=round_to),
                         recover=RecoverConfig(finetune_epochs=0), latency_runs=0, progress=False)
    res = run_workflow(cfg, data=RunData.given(None, None, description={"dataset": "none (random weights)"}),
                       base_model=copy.deepcopy(dense), example_inputs=example, log=lambda line: None)
    return res.model.eval()


def build(name: str, target: float, round_to: int, example: torch.Tensor) -> tuple[dict[str, nn.Module], dict]:
    """{variant: model} and what each keeps: dense, prunekit (uniform l1), prunekit hw (widths multiples of
    round_to) and, where torch-pruning is installed, its uniform-L1 model at no more MACs than prunekit's."""
    dense = _torchvision(name)
    models: dict[str, nn.Module] = {"dense": dense}
    for label, r in (("prunekit", 1), ("prunekit hw", round_to)):
        models[label] = prune_random_init(name, dense, target, r, example)
    info: dict[str, Any] = {}
    base = count_macs(dense, example)
    if peer.available():
        kept = count_macs(models["prunekit"], example) / base
        models["torch-pruning"], info["torch-pruning"] = peer.prune_to_macs(
            dense, example, kept, global_pruning=False, importance=_tp_importance(), **_tp_hooks(name))
    info["macs"] = {k: int(count_macs(m, example)) for k, m in models.items()}
    info["params"] = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    info["widths"] = {k: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)] for k, m in models.items()}
    return models, info


def _alternate(fns: dict[str, Callable[[], Any]], runs: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    times = alternate_times(fns, runs, warmup)
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "runs": len(v)} for k, v in times.items()}


def torch_fns(models: dict[str, nn.Module], example: torch.Tensor, batch: int,
              compiled: bool) -> dict[str, Callable[[], Any]]:
    """Inference-prepared (folded, channels-last) copies called on a channels-last batch; compiled with
    torch.compile (inductor, weights frozen) when asked, the compilation done here, before any timing."""
    x = example.repeat(batch, 1, 1, 1).contiguous(memory_format=torch.channels_last)
    fns = {}
    for k, m in models.items():
        net, _ = prepare_inference(m, channels_last=True)
        if compiled:
            net = torch.compile(net, options={"freezing": True})
            with torch.inference_mode():
                net(x)
        fns[k] = lambda net=net: net(x)
    return fns


def ort_fns(models: dict[str, nn.Module], example: torch.Tensor, batch: int, folder: Path,
            threads: int | None) -> dict[str, Callable[[], Any]]:
    """onnxruntime CPU sessions (all graph optimisations, `threads` intra-op threads) of each exported model."""
    import onnxruntime as ort
    x = example.repeat(batch, 1, 1, 1).numpy()
    fns = {}
    for k, m in models.items():
        path = folder / f"{k.replace(' ', '_')}.onnx"
        if not path.is_file():
            export_onnx(m, example, path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        fns[k] = lambda s=s: s.run(None, {s.get_inputs()[0].name: x})
    return fns


def measure_row(name: str, runtime: str, batch: int, models: dict[str, nn.Module], ex: torch.Tensor,
                cfg: BenchConfig, folder: Path) -> dict[str, Any]:
    """One (runtime, batch) row: the variants' latencies, alternated, and speedup / MAC ratio of each."""
    macs = {k: count_macs(m, ex) for k, m in models.items()}
    t0 = time.time()
    row: dict[str, Any] = {"model": name, "runtime": runtime, "batch": batch,
                           "load": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file()
                           else None}
    try:
        if runtime == "onnxruntime":
            fns = ort_fns(models, ex, batch, folder, cfg.threads)
        else:
            fns = torch_fns(models, ex, batch, compiled=runtime == "compile")
    except Exception as e:  # noqa: BLE001 - a runtime that cannot take the models is a result of the row
        if runtime != "compile":
            raise
        row["error"] = f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return row
    row["setup_s"] = time.time() - t0
    with torch.inference_mode():
        lat = _alternate(fns, cfg.latency_runs)
    for k in models:
        ms = lat[k]["median_ms"]
        row[f"{k} ms"] = ms
        if k != "dense":
            sp, mr = lat["dense"]["median_ms"] / ms, macs["dense"] / macs[k]
            row[f"{k} speedup"], row[f"{k} mac_ratio"], row[f"{k} efficiency"] = sp, mr, sp / mr
    row["timings"] = lat
    return row


def check_opts(opts: dict[str, Any]) -> None:
    """round_to an integer >= 1; batches a non-empty list of integers >= 1; compile_batches some of them where
    the compile runtime runs (a compile batch outside `batches` would time nothing)."""
    opt_int("speed 224", opts, "round_to")  # the hw model's channel multiple
    for key in ("batches", "compile_batches"):
        v = opts[key]
        if (not isinstance(v, list) or not v
                or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in v)):
            raise ValueError(f"speed 224: --opt {key}={v!r}: give a non-empty list of batch sizes >= 1")
    if "compile" in opts["runtimes"]:
        stray = sorted(set(opts["compile_batches"]) - set(opts["batches"]))
        if stray:
            raise ValueError(f"speed 224: compile_batches {stray} are not among batches {opts['batches']}, so "
                             "torch.compile would time nothing at them")


def run_model(name: str, target: float, opts: dict[str, Any], cfg: BenchConfig, rows: SuiteRows,
              ex: torch.Tensor) -> None:
    """Every (runtime, batch) row of one model and target not yet in `rows`, each appended when it ends."""
    todo = [(rt, b) for rt in opts["runtimes"] for b in opts["batches"]
            if (rt != "compile" or b in opts["compile_batches"])
            and not rows.done(model=name, target=target, runtime=rt, batch=b)]
    if not todo:
        return
    models, info = build(name, target, opts["round_to"], ex)
    common.log(f"speed 224: {name} MACs " + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in info["macs"].items()))
    with tempfile.TemporaryDirectory() as tmp:
        for rt, b in todo:
            row = measure_row(name, rt, b, models, ex, cfg, Path(tmp))
            row.update(target=target, macs=info["macs"], params=info["params"], widths=info["widths"],
                       peer=info.get("torch-pruning"))
            rows.add(row)
            if "error" in row:
                common.log(f"speed 224: {name} {rt} b{b}: {row['error']}")
                continue
            common.log(f"speed 224: {name} {rt} b{b}: dense {row['dense ms']:.1f} ms; " + ", ".join(
                f"{k} {row[f'{k} speedup']:.2f}x of {row[f'{k} mac_ratio']:.2f}x" for k in models if k != "dense"))


def columns() -> list[output.Column]:
    cols: list[output.Column] = [("model", lambda r: r["model"]), ("MACs kept", lambda r: output.pct(r["target"], 0)),
                                 ("runtime", lambda r: r["runtime"]),
                                 ("batch", lambda r: str(r["batch"])),
                                 ("dense ms", lambda r: r.get("error") or output.num(r.get("dense ms"), ".1f"))]
    for k in VARIANTS[1:]:
        cols.append((f"{k}: MAC ratio, speedup (share of MAC ratio)",
                     lambda r, k=k: "-" if r.get(f"{k} speedup") is None else
                     f"{r[f'{k} mac_ratio']:.2f}x, {r[f'{k} speedup']:.2f}x ({100 * r[f'{k} efficiency']:.0f}%)"))
    return cols


def run_224(cfg: BenchConfig, narrow_defaults: dict[str, Any]) -> dict[str, Any]:
    """The 224-px section; see the module docstring. `narrow_defaults`: the narrow section's preset options,
    which may stand in cfg.opts at their preset values (any other value of them is refused)."""
    if cfg.quick:
        raise ValueError("speed 224: --quick has no meaning here (the models are ImageNet-sized); choose fewer with "
                         "--opt models=[mobilenet_v2] --opt runtimes=[eager] --latency-runs 2")
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/speed/224")
    given = {k: v for k, v in cfg.opts.items() if k != "section" and narrow_defaults.get(k, object()) != v}
    opts = {**PRESET_OPTS, **{k: v for k, v in given.items() if k not in SELECT_OPTS}}
    unknown = sorted(set(opts) - set(PRESET_OPTS))
    if unknown:
        raise TypeError(f"speed 224: unknown options {unknown}; valid: {sorted(PRESET_OPTS) + list(SELECT_OPTS)}")
    for key, valid in (("runtimes", RUNTIMES), ("models", MODELS), ("only_runtimes", opts["runtimes"]),
                       ("only_models", opts["models"])):
        bad = sorted(set(given.get(key, opts.get(key, ()))) - set(valid))
        if bad:
            raise ValueError(f"speed 224: {key} {bad} not among {', '.join(valid)}")
    check_opts(opts)
    # the rows' settings: the options this section reads (the narrow section's defaults are not among them)
    header = dataclasses.replace(cfg, opts={k: v for k, v in cfg.opts.items() if k == "section" or k in PRESET_OPTS})
    rows = SuiteRows(out, header, KEYS, resume=cfg.resume)
    ex = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    run_opts = {**opts, "runtimes": [r for r in opts["runtimes"] if r in given.get("only_runtimes", opts["runtimes"])]}
    for name in [m for m in opts["models"] if m in given.get("only_models", opts["models"])]:
        for target in cfg.targets:
            run_model(name, float(target), run_opts, cfg, rows, ex)
    table = [{k: v for k, v in r.items() if k not in ("timings", "widths")} for r in rows.runs]
    intro = ("Measured speedup (dense / pruned median latency, dense, prunekit and Torch-Pruning models timed in "
             f"alternation, {cfg.latency_runs} timed runs after a warm-up, {cfg.threads} CPU thread(s)) next to the "
             f"MAC ratio, ImageNet-sized torchvision models at 224 px, "
             f"{', '.join(f'{100 * t:.0f}%' for t in cfg.targets)} of the MACs kept (uniform l1). 'prunekit hw': "
             f"widths rounded to multiples of {opts['round_to']}. The share of the MAC ratio is "
             "speedup / MAC ratio (goal: >= 90% at batch >= 16).")
    return output.write_suite(out, header, "Speed at 224 px: prunekit and Torch-Pruning at equal MACs", intro, table,
                              columns(), rows.runs, notes=notes(rows.runs), started=started,
                              not_read=budget_not_read(sys.modules[__name__], "speed"))


def notes(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in runs:
        if r["batch"] < 16:
            continue
        eff = {k: r.get(f"{k} efficiency") for k in VARIANTS[1:] if r.get(f"{k} efficiency") is not None}
        if not eff:
            continue
        best = max(eff, key=eff.get)
        out.append(f"{r['model']} {r['runtime']} batch {r['batch']}: " + ", ".join(
            f"{k} {100 * v:.0f}% of its MAC ratio" for k, v in eff.items()) + f"; fastest per MAC: {best}; "
            f"goal >= 90% {'met' if eff.get('prunekit hw', 0) >= 0.9 else 'missed'} by prunekit hw.")
    return out
