"""Where pruned models lose time: torch.profiler operator breakdowns and onnxruntime graph choices, dense vs
pruned (uniform l1 to 50% of the MACs, prunekit), with and without widths rounded to blocks of 16 (8 for the
narrow ResNet-20), BatchNorm folded and channels-last; one thread, random weights (weights do not change the kernels chosen).

    /tmp/cpujob .venv/bin/python benchmarks/speed_profile.py --out benchmarks/results/speed/profile
    .venv/bin/python benchmarks/speed_profile.py --models vgg11 --runs 3     # one model, quick

Writes profile.json (every number) and profile.md (the tables). Timings are medians of runs with the variants
of one model alternated; the profiler columns are self CPU time per operator, summed over the profiled runs.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import prunekit as pk  # noqa: E402
from prunekit.measure import export_onnx  # noqa: E402
from prunekit.measure.latency import cpu_name  # noqa: E402
from prunekit.models import create  # noqa: E402
from prunekit.surgery.inference import prepare_inference  # noqa: E402

# name: (input channels, input size, batches, width multiplier, round_to of the "pruned hw" variant); the narrow
# ones at the widths of the committed speed suite (ResNet-20 at width 0.5 has 8-32 channels: blocks of 8)
MODELS = {"resnet50": (3, 224, [1, 16], 1.0, 16), "mobilenet_v2": (3, 224, [1, 16], 1.0, 16),
          "vgg11": (1, 28, [1, 64], 0.25, 16), "resnet20": (1, 28, [1, 64], 0.5, 8)}
MODES = {"eager": {"fold_bn": False}, "folded": {"fold_bn": True},
         "folded+cl": {"fold_bn": True, "channels_last": True}}


def base_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in ("resnet50", "mobilenet_v2"):
        import torchvision
        return getattr(torchvision.models, name)().eval()
    return create(name, num_classes=10, in_channels=1, width=MODELS[name][3]).eval()


def variants(name: str, example: torch.Tensor) -> dict[str, torch.nn.Module]:
    dense = base_model(name)
    out = {"dense": dense}
    for label, round_to in (("pruned", 1), ("pruned hw", MODELS[name][4])):
        m = base_model(name)
        plan = pk.plan(m, example, target=pk.Target(macs=0.5), criterion="l1", policy="uniform", round_to=round_to)
        out[label] = pk.apply(m, plan).eval()
    return out


def alternate(fns: dict, runs: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times = collections.defaultdict(list)
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1000 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def op_profile(model: torch.nn.Module, x: torch.Tensor, runs: int = 2) -> dict[str, float]:
    """Self CPU milliseconds per operator (per forward), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    ops = {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages()}
    calls = sum(e.count for e in prof.key_averages()) / runs
    return {"ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:10]), "op_calls": calls}


def ort_graph(model: torch.nn.Module, example: torch.Tensor, tmp: Path, label: str, batches, runs) -> dict:
    """onnxruntime (all graph optimisations, 1 thread): node types of the optimised graph and latency."""
    import onnx
    import onnxruntime as ort
    path = export_onnx(model, example, tmp / f"{label}.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.optimized_model_filepath = str(tmp / f"{label}.opt.onnx")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    nodes = collections.Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}"
                                for n in onnx.load(opts.optimized_model_filepath).graph.node)
    return {"session": sess, "nodes": dict(nodes)}


def profile_model(name: str, runs: int, tmp: Path) -> dict:
    cin, size, batches, _, _ = MODELS[name]
    ex = torch.randn(1, cin, size, size, generator=torch.Generator().manual_seed(0))
    models = variants(name, ex)
    res = {"macs": {k: int(pk.count(m, ex).macs) for k, m in models.items()}, "latency_ms": {}, "profile": {},
           "ort_nodes": {}, "widths": {k: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
                                        for k, m in models.items()}}
    prepared = {(k, mode): prepare_inference(m, ex, **cfg)[0] for k, m in models.items() for mode, cfg in MODES.items()}
    sessions = {}
    for k, m in models.items():
        g = ort_graph(m, ex, tmp, f"{name}_{k}".replace(" ", "_"), batches, runs)
        sessions[k], res["ort_nodes"][k] = g["session"], g["nodes"]
    for b in batches:
        x = ex.repeat(b, 1, 1, 1)
        xn = x.numpy()
        fns = {f"torch {mode} {k}": (lambda m=m, mode=mode: m(x.contiguous(memory_format=torch.channels_last)
                                                            if mode.endswith("cl") else x))
               for (k, mode), m in prepared.items()}
        fns.update({f"ort {k}": (lambda s=s: s.run(None, {s.get_inputs()[0].name: xn})) for k, s in sessions.items()})
        with torch.inference_mode():
            res["latency_ms"][b] = alternate(fns, runs)
        for (k, mode), m in prepared.items():
            if mode != "folded+cl":
                res["profile"][f"b{b} {mode} {k}"] = op_profile(m, x)
        print(f"{name} b{b}: " + ", ".join(f"{k} {v:.2f}" for k, v in res["latency_ms"][b].items()), flush=True)
    return res


def markdown(results: dict, meta: dict) -> str:
    lines = ["# Where pruned models lose time (profile)", "", f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; "
             f"torch {torch.__version__}, 1 thread; load before the run: {meta['load']}", ""]
    for name, r in results.items():
        d = r["macs"]["dense"]
        lines += [f"## {name}", "", "MACs kept: " + ", ".join(f"{k} {v / d:.3f}" for k, v in r["macs"].items()), "",
                  "| batch | runtime | dense ms | pruned ms | speedup | / MAC ratio | pruned hw ms | speedup | / MAC ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for b, lat in r["latency_ms"].items():
            for rt in [f"torch {m}" for m in MODES] + ["ort"]:
                dn, p, p16 = lat[f"{rt} dense"], lat[f"{rt} pruned"], lat[f"{rt} pruned hw"]
                mr, mr16 = d / r["macs"]["pruned"], d / r["macs"]["pruned hw"]
                lines.append(f"| {b} | {rt} | {dn:.2f} | {p:.2f} | {dn / p:.2f}x | {dn / p / mr:.2f} | {p16:.2f} | "
                             f"{dn / p16:.2f}x | {dn / p16 / mr16:.2f} |")
        lines += ["", "Self CPU ms per forward, top operators (torch.profiler):", ""]
        for key, prof in r["profile"].items():
            ops = ", ".join(f"{k} {v:.2f}" for k, v in list(prof["ops"].items())[:6])
            lines.append(f"- {key} ({prof['op_calls']:.0f} op calls): {ops}")
        lines += ["", "onnxruntime optimised graph, node types:", ""]
        for k, nodes in r["ort_nodes"].items():
            lines.append(f"- {k}: " + ", ".join(f"{n} {c}" for n, c in sorted(nodes.items(), key=lambda kv: -kv[1])))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/speed/profile")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    meta = {"command": "python " + " ".join(sys.argv), "machine": f"{cpu_name()}, {os.cpu_count()} cores", "load": " ".join(load)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:  # written after every model, so a failure keeps the finished ones
            results[name] = profile_model(name, args.runs, Path(tmp))
            (out / "profile.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
            (out / "profile.md").write_text(markdown(results, meta))


if __name__ == "__main__":
    main()
