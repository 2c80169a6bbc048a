"""Engine coverage and speed: how many torchvision classifiers prunekit prunes and verifies, side by side with
torch-pruning (optional `bench` extra), and the time to trace+plan+apply ResNet-50 and ViT-B/16.

    python benchmarks/engine.py                 # every torchvision classifier (about an hour on 2 CPU cores)
    python benchmarks/engine.py --quick         # a handful of models, for the test suite
Writes benchmarks/results/engine/{results.json,results.md} (or --out); --resume continues a run from its
rows.jsonl. Each tool runs on each model in a fresh process limited to --limit-seconds and --limit-memory-gb,
so a tool that hangs or exhausts memory on one model gives that model an error row and the run goes on.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import prunekit as pk
from prunekit.report import environment_info, markdown_table
from prunekit.surgery.verify import make_input_sensitive

QUICK = ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5"]
FIXED_SIZE = {"inception_v3": 75, "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224,
              "vit_h_14": 224, "maxvit_t": 224}


def build(name: str) -> torch.nn.Module:
    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, num_classes=10, **kw).eval()


def smallest_input(model, name):
    for s in ([FIXED_SIZE[name]] if name in FIXED_SIZE else [32, 64, 96, 128, 224]):
        x = torch.randn(1, 3, s, s)
        try:
            with torch.no_grad():
                model(x)
            return x
        except RuntimeError:
            continue
    raise RuntimeError("no input size accepted")


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def run_prunekit(model, x, ratio=0.3) -> dict:
    t0 = time.perf_counter()
    plan = pk.plan(model, x, ratio=ratio)
    pruned = pk.apply(copy.deepcopy(model), plan)
    t1 = time.perf_counter()
    with torch.no_grad():
        ref, out = model(x), pruned(x)
    rep = pk.verify(model, pruned, plan, x)
    ok = out.shape == ref.shape and n_params(pruned) < n_params(model)
    return {"ok": bool(ok), "verified": bool(rep.exact or not plan.exact), "exact": bool(rep.exact),
            "params_kept": n_params(pruned) / n_params(model), "seconds": t1 - t0,
            "max_rel_diff": rep.max_rel_diff}


def _classifier(model):
    last = None
    for m in model.modules():  # the layer that produces the logits: Linear, or a 1x1 conv (SqueezeNet)
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            last = m
    return [last] if last is not None else []


def run_torch_pruning(model, x, ratio=0.3) -> dict:
    import torch_pruning as tp

    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    imp = tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.MetaPruner(m, x, importance=imp, pruning_ratio=ratio, ignored_layers=_classifier(m))
    pruner.step()
    t1 = time.perf_counter()
    with torch.no_grad():
        ref, out = model(x), m(x)
    ok = out.shape == ref.shape and n_params(m) < n_params(model)
    return {"ok": bool(ok), "params_kept": n_params(m) / n_params(model), "seconds": t1 - t0}


LIMITS = {"seconds": 900.0, "memory_gb": 16.0}  # per tool and model; set from the command line
TOOLS = {"prunekit": run_prunekit, "torch_pruning": run_torch_pruning}


def _call(fn, args) -> dict:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - a benchmark records failures instead of stopping
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def _child(conn, fn, args, memory_gb, threads) -> None:
    import resource

    torch.set_num_threads(threads)
    limit = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # an allocation past it raises, not the OOM killer
    conn.send(_call(fn, args))
    conn.close()


def guarded(fn, *args) -> dict:
    """Run fn(*args) in a fresh (spawned) process under a time and address-space limit, so that one tool
    hanging or exhausting memory on one model becomes a row instead of ending the run. fn and args must pickle."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # not fork: OpenMP in a forked child of a process that ran torch can hang
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, LIMITS["memory_gb"], torch.get_num_threads()))
    proc.start()
    child.close()
    if parent.poll(LIMITS["seconds"]):
        try:
            result = parent.recv()
        except EOFError:
            result = {"ok": False, "error": f"the process died (exit code {proc.join(5) or proc.exitcode})"}
    else:
        result = {"ok": False, "error": f"timeout: more than {LIMITS['seconds']:.0f} s"}
    proc.kill()
    proc.join()
    return result


def model_row(tool: str, name: str, size: int | None = None) -> dict:
    """Build `name` (seed 0), pick its smallest input (or size x size), run `tool` on it; in the child process."""
    torch.manual_seed(0)
    model = build(name)
    x = smallest_input(model, name) if size is None else torch.randn(1, 3, size, size)
    make_input_sensitive(model, x)  # BN statistics from a random batch, zero classifiers re-drawn
    return {**_call(TOOLS[tool], (model, x)), "input": list(x.shape)}


def timing(name: str, tool: str, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        r = guarded(model_row, tool, name, 224)
        if not r.get("ok"):
            return {"error": r.get("error", "failed")}
        times.append(r["seconds"])
    return {"median_s": statistics.median(times), "runs": times}


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine"))
    ap.add_argument("--resume", action="store_true", help="keep the models already in <out>/rows.jsonl")
    ap.add_argument("--skip-timings", action="store_true")
    ap.add_argument("--redo", nargs="*", default=[], choices=["prunekit", "torch_pruning"],
                    help="with --resume: run these tools again on every model, keeping the other results")
    ap.add_argument("--no-peer", action="store_true", help="skip torch-pruning even when installed")
    ap.add_argument("--limit-seconds", type=float, default=LIMITS["seconds"], help="per tool and model")
    ap.add_argument("--limit-memory-gb", type=float, default=LIMITS["memory_gb"],
                    help="address space per tool and model")
    args = ap.parse_args(argv)
    LIMITS.update(seconds=args.limit_seconds, memory_gb=args.limit_memory_gb)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        import torch_pruning  # noqa: F401

        peer = not args.no_peer
    except ImportError:
        peer = False
    names = args.models or (QUICK if args.quick else sorted(torchvision.models.list_models(module=torchvision.models)))
    out = Path(args.out)
    rows = []
    if args.resume and (out / "rows.jsonl").exists():
        rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]
    done = {r["model"] for r in rows}
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    tfile = out / "timings.json"
    if args.resume and tfile.exists():
        timings = json.loads(tfile.read_text())
    elif not args.quick and not args.skip_timings:
        for name in ("resnet50", "vit_b_16"):
            timings[name] = {"prunekit": timing(name, "prunekit", args.repeats)}
            if peer:
                timings[name]["torch_pruning"] = timing(name, "torch_pruning", args.repeats)
        tfile.write_text(json.dumps(timings, indent=1))
    for row in rows if args.redo else []:
        for tool in args.redo:
            res = guarded(model_row, tool, row["model"])
            res.pop("input", None)
            row[tool] = res
        print(json.dumps(row), flush=True)
    if args.redo:
        _write_rows(out / "rows.jsonl", rows)
    for name in names:
        if name in done:
            continue
        row = {"model": name, "input": None}
        for tool in ["prunekit"] + (["torch_pruning"] if peer else []):
            res = guarded(model_row, tool, name)
            row["input"] = row["input"] or res.pop("input", None)
            res.pop("input", None)
            row[tool] = res
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / "rows.jsonl", "a") as f:  # one line per model, so a long run can resume
            f.write(json.dumps(row) + "\n")
    rows.sort(key=lambda r: names.index(r["model"]) if r["model"] in names else len(names))
    summary = {"models": len(rows), "prunekit_ok": sum(r["prunekit"].get("ok", False) for r in rows),
               "prunekit_verified": sum(r["prunekit"].get("ok", False) and r["prunekit"].get("verified", False)
                                        for r in rows),
               "prunekit_exact": sum(r["prunekit"].get("exact", False) for r in rows)}
    if peer:
        summary["torch_pruning_ok"] = sum(r["torch_pruning"].get("ok", False) for r in rows)
    command = " ".join(["python", "benchmarks/engine.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"summary": summary, "rows": rows, "timings": timings, "command": command,
              "environment": environment_info()}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    table = [{"model": r["model"], "input": "x".join(map(str, (r["input"] or [])[2:])),
              "prunekit": "ok" if r["prunekit"].get("ok") else r["prunekit"].get("error", "fail")[:60],
              "verify": ("exact" if r["prunekit"].get("exact") else "approx") if r["prunekit"].get("ok") else "-",
              "params kept": f"{r['prunekit'].get('params_kept', float('nan')):.2f}",
              **({"torch-pruning": "ok" if r["torch_pruning"].get("ok") else
                  r["torch_pruning"].get("error", "fail")[:60]} if peer else {})} for r in rows]
    cols = list(table[0].keys()) if table else []
    md = ["# Engine coverage and speed", "", f"Command: `{result['command']}`", "",
          f"Machine: {json.dumps(result['environment'].get('machine', {}))}", "",
          f"Versions: {json.dumps(result['environment'].get('versions', {}))}", "", "## Summary", "",
          "```", json.dumps(summary, indent=1), "```", ""]
    if timings:
        md += ["## trace + plan + apply at 224x224, 30% uniform (median seconds)", ""]
        for n, t in timings.items():
            md.append(f"- {n}: " + ", ".join(f"{tool} {v.get('median_s', float('nan')):.2f} s"
                                            if "median_s" in v else f"{tool} {v.get('error')}"
                                            for tool, v in t.items()))
        md.append("")
    md += ["## Per model (30% uniform L1, classifier outputs kept)", "", markdown_table(table, cols)]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
