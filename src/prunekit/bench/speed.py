"""Suite `speed`: the theoretical speedup (dense MACs / pruned MACs) of every pruned model of the other suites
next to the measured one, dense/pruned latency on CPU at batch 1 and 64, with torch and with onnxruntime.

The pruned architectures are rebuilt from the per-layer widths each suite records in runs.json (the first
seed of every arch/target/method; identical architectures are timed once): the base architecture is traced,
each group keeps that many channels, and the plan is applied. Weights do not change latency, so the models
carry random weights; their MACs are checked against the recorded ones."""
from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import prunekit as pk

from ..graph.plan import PruningPlan
from ..probing import trace
from ..models import create
from ..report import plot_speedup_vs_mac_ratio
from ..surgery import apply, prepare_inference
from . import common, output
from .config import BenchConfig, budget_not_read
from .speed224 import PRESET_OPTS, SELECT_OPTS, prune_random_init, run_224
from .speed224 import READS as SECTION_READS
from .timing import paired_latency, paired_onnx_latency

SOURCES = ("redundancy", "coarse", "admm")
READS = SECTION_READS  # both sections read the same settings (bench.config.unread_settings)
RESUMABLE = True  # the 224-px section's rows (--opt section=224); the narrow section reruns whole
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"latency_runs": 50, "archs": []},
    "quick": {"latency_runs": 3, "latency_batches": [1, 8]},
    "opts": {"results_dir": "benchmarks/results", "onnx": True, "prepare": True, "hw_widths": []},
    # read without a preset value: the section, the narrow section's sources, the 224-px section's options
    "extra_opts": ["section", "sources", *PRESET_OPTS, *SELECT_OPTS],
}

def columns(batches: list[int]) -> list[output.Column]:
    cols: list[output.Column] = [
        ("arch", lambda r: r["arch"]),
        ("MACs kept", lambda r: output.pct(r["macs_kept"])),
        ("MAC ratio", lambda r: output.num(r["mac_ratio"], ".2f", "x")),
        ("groups with a multiple of 8 channels", lambda r: output.pct(r.get("aligned8"), 0))]
    for kind, name in (("torch", "torch"), ("onnx", "onnxruntime")):
        for b in batches:
            cols.append((f"{name} b{b}", lambda r, k=f"{kind}_{b}": output.num(r.get(k), ".2f", "x")))
    lo, hi = min(batches), max(batches)
    cols.append((f"pruned latency b{lo} / b{hi} (torch, ms)",
                 lambda r: f"{output.num(r.get(f'torch_{lo}_ms'))} / {output.num(r.get(f'torch_{hi}_ms'), '.1f')}"))
    cols.append(("models (suite: target, method)", lambda r: "; ".join(r["models"])))
    return cols


def collect(results_dir: Path, suites=SOURCES) -> list[dict[str, Any]]:
    """One entry per distinct (arch, width, per-layer widths) over the suites' runs.json (first seed only)."""
    found: dict[tuple, dict[str, Any]] = {}
    for suite in suites:
        path = results_dir / suite / "runs.json"
        if not path.is_file():
            continue
        runs = json.loads(path.read_text())
        first = min((r.get("seed", 0) for r in runs), default=0)
        for r in runs:
            if r.get("seed", 0) != first or not r.get("widths"):
                continue
            key = (r["arch"], r["width"], tuple(sorted(r["widths"].items())))
            e = found.setdefault(key, {"arch": r["arch"], "width": r["width"], "widths": r["widths"],
                                       "macs": r.get("macs"), "macs_kept": r.get("macs_kept"), "models": []})
            e["models"].append(f"{suite}: {100 * r['target']:.0f}%, {r['method']}")
    return list(found.values())


def rebuild(arch: str, width: float, widths: dict[str, int], example: torch.Tensor, in_channels: int = 1,
            num_classes: int = 10) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(dense model, pruned model with `widths` channels per group), random weights."""
    torch.manual_seed(0)
    dense = create(arch, num_classes=num_classes, in_channels=in_channels, width=width).eval()
    graph = trace(dense, example)
    sizes = {g.name: g.size for g in graph.groups}
    unknown = sorted(set(widths) - set(sizes))
    if unknown:
        raise ValueError(f"{arch}: groups {unknown} are not in the base architecture")
    kept = {n: list(range(int(k))) for n, k in widths.items() if int(k) < sizes[n]}
    pruned = apply(copy.deepcopy(dense), PruningPlan.from_kept(graph, kept))
    return dense, pruned.eval()


def aligned(widths: dict[str, int], dense: torch.nn.Module, example: torch.Tensor, multiple: int = 8) -> float:
    """Share of the base's prunable groups whose pruned width is a multiple of `multiple` (vectorised CPU
    kernels, e.g. onnxruntime's blocked convolutions, work in blocks of 8 or 16 channels)."""
    names = [g.name for g in trace(dense, example).prunable_groups() if g.name in widths]
    return sum(1 for n in names if int(widths[n]) % multiple == 0) / max(1, len(names))


def hw_entries(archs: list[tuple[str, float]], targets: list[float], multiples: list[int],
               example: torch.Tensor) -> tuple[list[dict[str, Any]], list[str]]:
    """For `--opt hw_widths=[8, 16]`: uniform l1 at each target with every width a multiple of each number, next
    to the suites' own widths (speed224.prune_random_init: one data-free `run_workflow` each, random weights).
    Returns the entries and one note per (target, multiple) the rounding cannot reach."""
    entries, unreachable = [], []
    for arch, width in archs:
        for r in multiples:
            for t in targets:
                torch.manual_seed(0)
                m = create(arch, num_classes=10, in_channels=1, width=width).eval()
                ref = pk.trace(m, example)
                try:
                    pruned = prune_random_init(arch, m, float(t), int(r), example)
                except ValueError as e:  # the planning path's refusal (TargetError, a round_to too big)
                    unreachable.append(f"{arch} (width {width}) at {100 * t:.0f}% of the MACs with widths multiples "
                                       f"of {r}: not timed, {e}")
                    common.log(f"speed: {unreachable[-1]}")
                    continue
                entries.append({"arch": arch, "width": width, "widths": common.widths(pruned, example, ref),
                                "macs": None, "macs_kept": None,
                                "models": [f"hw: {100 * t:.0f}%, uniform l1, widths multiples of {r}"]})
    return entries, unreachable


def quick_entries(cfg: BenchConfig, example: torch.Tensor) -> list[dict[str, Any]]:
    """Without --sources in quick mode: two plans (uniform and global l1 at the first target) of the first arch."""
    arch, width = cfg.archs[0]
    entries = []
    for policy in ("uniform", "global"):
        m = create(arch, num_classes=10, in_channels=1, width=width).eval()
        ref = pk.trace(m, example)
        plan = pk.plan(m, example, target=pk.Target(macs=cfg.targets[0]), criterion="l1", policy=policy)
        p = pk.apply(m, plan)
        entries.append({"arch": arch, "width": width, "widths": common.widths(p, example, ref), "macs": None,
                        "macs_kept": None, "models": [f"quick: {100 * cfg.targets[0]:.0f}%, {policy} l1"]})
    return entries


def check_narrow_opts(cfg: BenchConfig) -> None:
    """The narrow section's --opt values: onnx and prepare true or false, hw_widths a list of channel multiples
    >= 1, results_dir only where it is read (not with --quick, which prunes its own models, nor with sources)."""
    for key in ("onnx", "prepare"):
        if not isinstance(cfg.opts.get(key, True), bool):
            raise ValueError(f"speed: --opt {key}={cfg.opts[key]!r}: give true or false")
    hw = cfg.opts.get("hw_widths") or []
    if not isinstance(hw, list) or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in hw):
        raise ValueError(f"speed: --opt hw_widths={hw!r}: give a list of channel multiples, integers >= 1")
    if cfg.opts.get("results_dir") != PRESETS["opts"]["results_dir"] and (cfg.quick or cfg.opts.get("sources")):
        raise ValueError(f"speed: --opt results_dir={cfg.opts['results_dir']!r} is not read "
                         + ("with --quick (it times models it prunes itself)" if cfg.quick else
                            "with --opt sources (the folders named there are read instead)"))


def run(cfg: BenchConfig) -> dict[str, Any]:
    """The narrow section (the other suites' pruned models), or with `--opt section=224` the 224-px one."""
    section = str(cfg.opts.get("section", "narrow"))  # YAML reads --opt section=224 as a number
    if section == "224":
        return run_224(cfg, PRESETS["opts"])
    if section != "narrow":
        raise ValueError(f"speed: --opt section={section!r}; valid: narrow (default), 224")
    if cfg.resume or cfg.full:
        raise ValueError("speed: --resume and --full are for the 224-px section (--opt section=224); the narrow "
                         "section reruns whole in minutes")
    only_224 = sorted(set(cfg.opts) & (set(PRESET_OPTS) | set(SELECT_OPTS)))
    if only_224:
        raise ValueError(f"speed: --opt {', '.join(only_224)} belong(s) to the 224-px section; add --opt section=224")
    check_narrow_opts(cfg)
    started = time.time()
    common.set_threads(cfg)
    out = Path(cfg.out or "benchmarks/results/speed")
    ex = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    src = cfg.opts.get("sources")
    if src:
        entries = [e for d in src for e in collect(Path(d).parent, [Path(d).name])]
    elif cfg.quick:
        entries = quick_entries(cfg, ex)
    else:
        entries = collect(Path(cfg.opts["results_dir"]))
    if cfg.archs and not cfg.quick:
        entries = [e for e in entries if (e["arch"], e["width"]) in {tuple(a) for a in cfg.archs}]
    unreachable: list[str] = []
    if cfg.opts.get("hw_widths"):
        archs = list(dict.fromkeys((e["arch"], e["width"]) for e in entries))
        hw, unreachable = hw_entries(archs, list(cfg.targets), list(cfg.opts["hw_widths"]), ex)
        entries += hw
    if not entries:
        raise FileNotFoundError("speed: no runs.json with per-layer widths under "
                                f"{cfg.opts['results_dir']}/{{{','.join(SOURCES)}}}; run those suites first")
    entries.sort(key=lambda e: (e["arch"], -(e["macs_kept"] or 0)))
    use_onnx = cfg.opts.get("onnx", True)
    prepare = cfg.opts.get("prepare", True)  # torch times pk.prepare_inference copies (folded, channels-last)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        use_onnx = False
    rows: list[dict[str, Any]] = []
    dense_ms: dict[str, dict[str, float]] = {}
    for i, e in enumerate(entries):
        dense, pruned = rebuild(e["arch"], e["width"], e["widths"], ex)
        cd, cp = common.counts(dense, ex), common.counts(pruned, ex)
        row = {k: e[k] for k in ("arch", "width", "models")}
        row.update(macs=cp["macs"], params=cp["params"], macs_kept=cp["macs"] / cd["macs"],
                   mac_ratio=cd["macs"] / cp["macs"], recorded_macs=e.get("macs"), widths=e["widths"],
                   aligned8=aligned(e["widths"], dense, ex))
        timed = {k: prepare_inference(m, channels_last=True)[0] if prepare else m
                 for k, m in (("dense", dense), ("pruned", pruned))}
        for b in cfg.latency_batches:
            lat = paired_latency(timed, ex, b, cfg.latency_runs, threads=cfg.threads)
            row[f"torch_{b}"], row[f"torch_{b}_ms"], row[f"torch_{b}_dense_ms"] = (
                lat["dense"] / lat["pruned"], lat["pruned"], lat["dense"])
            dense_ms.setdefault(e["arch"], {}).setdefault(f"torch b{b}", []).append(lat["dense"])
        if use_onnx:
            for b, lat in paired_onnx_latency({"dense": dense, "pruned": pruned}, ex, cfg.latency_batches,
                                              cfg.latency_runs, threads=cfg.threads).items():
                row[f"onnx_{b}"], row[f"onnx_{b}_ms"], row[f"onnx_{b}_dense_ms"] = (
                    lat["dense"] / lat["pruned"], lat["pruned"], lat["dense"])
                dense_ms.setdefault(e["arch"], {}).setdefault(f"onnxruntime b{b}", []).append(lat["dense"])
        rows.append(row)
        common.log(f"[{i + 1}/{len(entries)}] {e['arch']} MACs kept {100 * row['macs_kept']:.1f}%: " + ", ".join(
            f"{k} {row[k]:.2f}x" for k in row if k.startswith(("torch_", "onnx_")) and not k.endswith("ms")))
    plots = speed_plots(out, rows, cfg)
    notes = observations(rows, dense_ms) + unreachable
    intro = ("Theoretical speedup (MAC ratio, dense / pruned MACs) against measured speedup (dense / pruned median "
             f"latency, {cfg.latency_runs} timed runs after warm-up, dense and pruned timed in alternation, "
             f"{cfg.threads} CPU thread(s)) for every distinct pruned architecture of the "
             f"{', '.join(SOURCES)} suites, with torch (eager, inference mode"
             f"{'; BatchNorm folded and channels-last, pk.prepare_inference, dense and pruned alike' if prepare else ''}"
             ") and onnxruntime (CPU provider). Speedup columns are measured dense / pruned latency.")
    table = [{k: v for k, v in r.items() if k != "widths"} for r in rows]
    return output.write_suite(out, cfg, "Speed: MAC ratio vs measured CPU speedup (torch and onnxruntime)", intro,
                              table, columns(cfg.latency_batches), rows, plots, notes, started=started,
                              not_read=budget_not_read(sys.modules[__name__]))


def speed_plots(out: Path, rows: list[dict[str, Any]], cfg: BenchConfig) -> list[str]:
    plots = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        pts = []
        for r in rows:
            if r["arch"] != arch:
                continue
            for kind, name in (("torch", "torch"), ("onnx", "onnxruntime")):
                for b in cfg.latency_batches:
                    if r.get(f"{kind}_{b}") is not None:
                        pts.append({"name": name, "batch": b, "mac_ratio": r["mac_ratio"], "speedup": r[f"{kind}_{b}"]})
        plots.append(plot_speedup_vs_mac_ratio(pts, out / f"speedup_vs_mac_ratio_{arch}.png").name)
    return plots


def observations(rows: list[dict[str, Any]], dense_ms: dict[str, dict[str, list[float]]]) -> list[str]:
    notes = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        rs = [r for r in rows if r["arch"] == arch]
        d = ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in dense_ms.get(arch, {}).items())
        notes.append(f"{arch}: dense latency {d} (medians over the pairs).")
        cols = sorted({k for r in rs for k in r if k.startswith(("torch_", "onnx_")) and not k.endswith("ms")},
                      key=lambda k: (k.split("_")[0] != "torch", int(k.split("_")[1])))
        for col in cols:
            kind, b = col.split("_")
            name = f"{'torch' if kind == 'torch' else 'onnxruntime'} batch {b}"
            eff = [r[col] / r["mac_ratio"] for r in rs if r.get(col)]
            if eff:
                notes.append(f"{arch}, {name}: measured speedup is {100 * statistics.median(eff):.0f}% of the MAC ratio "
                             f"(median over {len(eff)} models, range {100 * min(eff):.0f}-{100 * max(eff):.0f}%).")
    return notes
