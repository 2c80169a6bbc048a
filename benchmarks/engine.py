"""Engine coverage and speed: how many models of three zoos prunekit prunes and verifies, side by side with
torch-pruning (optional `bench` extra), and the time to trace+plan+apply ResNet-50 and ViT-B/16.

    python benchmarks/engine.py                      # every torchvision classifier (about an hour on 2 CPU cores)
    python benchmarks/engine.py --zoo timm           # one model per timm family (tests/graph/timm_families.json)
    python benchmarks/engine.py --zoo hf             # the tiny Hugging Face zoo (prunekit.transformers.hf_zoo)
    python benchmarks/engine.py --summary            # SUMMARY.md: the three zoos side by side
    python benchmarks/engine.py --quick              # a handful of models, for the test suite
Writes benchmarks/results/engine/{results.json,results.md} for torchvision and .../engine/<zoo>/ for the others
(or --out); --resume continues a run from its rows.jsonl, so a zoo can be run in parts. Each tool runs on each
model in a fresh process limited to --limit-seconds and --limit-memory-gb, so a tool that hangs or exhausts
memory on one model gives that model an error row and the run goes on. prunekit's "exact" is checked by zeroing
plan.removals() in the original (independently of pk.verify): `wrong_exact` counts the claims it refutes, and
any such row makes the run exit with status 1, naming the models.
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

import engine_zoos
import prunekit as pk
from prunekit.utils.inputs import call_model, output_tensors
from prunekit.report import environment_info, markdown_table
from prunekit.surgery.verify import make_input_sensitive

RESULTS = Path(__file__).parent / "results" / "engine"


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _shapes(out) -> list:
    return [t.shape for t in output_tensors(out)]


def _rel(a, b) -> float:
    a, b = output_tensors(a), output_tensors(b)
    scale = max((float(t.float().abs().max()) for t in a if t.numel()), default=0.0) or 1.0
    return max((float((x.float() - y.float()).abs().max()) for x, y in zip(a, b) if x.numel()), default=0.0) / scale


def run_prunekit(model, x, ratio=0.3) -> dict:
    pruned = copy.deepcopy(model)  # copied outside the timed part, as for torch-pruning (which prunes in place)
    t0, c0 = time.perf_counter(), time.process_time()
    plan = pk.plan(model, x, ratio=ratio)
    pk.apply(pruned, plan)
    t1, c1 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        ref, out = call_model(model, x), call_model(pruned, x)
        zero = _rel(engine_zoos.zeroed_outputs(model, plan, x), out)
    rep = pk.verify(model, pruned, plan, x)
    ok = _shapes(out) == _shapes(ref) and n_params(pruned) < n_params(model)
    wrong = bool(plan.exact and zero > 1e-4)
    return {"ok": bool(ok), "verified": bool((rep.exact or not plan.exact) and not wrong), "exact": bool(rep.exact),
            "claims_exact": bool(plan.exact), "wrong_exact": wrong, "zeroing_rel_diff": zero,
            "reasons": plan.reasons()[:3], "excluded": len(plan.meta.get("excluded", {})),
            "params_kept": n_params(pruned) / n_params(model), "seconds": t1 - t0, "cpu_seconds": c1 - c0,
            "max_rel_diff": rep.max_rel_diff,
            "weak": bool(rep.weak)}


def _classifier(model):
    last = None
    for m in model.modules():  # the layer that produces the logits: Linear, or a 1x1 conv (SqueezeNet)
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            last = m
    return [last] if last is not None else []


def _first_tensor(out):
    return output_tensors(out)[0]


def run_torch_pruning(model, x, ratio=0.3) -> dict:
    import torch_pruning as tp

    m = copy.deepcopy(model)
    t0, c0 = time.perf_counter(), time.process_time()
    imp = tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.MetaPruner(m, x, importance=imp, pruning_ratio=ratio, ignored_layers=_classifier(m),
                                  output_transform=_first_tensor)  # HF outputs hold caches: trace from a tensor
    pruner.step()
    t1, c1 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        ref, out = call_model(model, x), call_model(m, x)
    ok = _shapes(out) == _shapes(ref) and n_params(m) < n_params(model)
    return {"ok": bool(ok), "params_kept": n_params(m) / n_params(model), "seconds": t1 - t0, "cpu_seconds": c1 - c0}


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


def model_row(tool: str, zoo: str, name: str, size: int | None = None) -> dict:
    """Build `name` of `zoo` (seed 0) at its smallest input (or size x size), run `tool`; in the child process."""
    model, x, sensitize = engine_zoos.build(zoo, name, size)
    if sensitize:
        make_input_sensitive(model, x)  # BN statistics from a random batch, zero classifiers re-drawn
    shape = list(x.shape) if isinstance(x, torch.Tensor) else {k: list(v.shape) for k, v in dict(x).items()}
    return {**_call(TOOLS[tool], (model, x)), "input": shape}


def timing(name: str, tools: list[str], repeats: int) -> dict:
    """Per tool, the median seconds of trace + plan + apply of `name` at 224x224 over `repeats` fresh processes,
    the tools alternated (prunekit, peer, prunekit, ...) so that a load change meets both alike."""
    times: dict[str, list[float]] = {t: [] for t in tools}
    cpu: dict[str, list[float]] = {t: [] for t in tools}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for tool in tools:
            if tool in errors:
                continue
            r = guarded(model_row, tool, "torchvision", name, 224)
            if r.get("ok"):
                times[tool].append(r["seconds"])
                cpu[tool].append(r["cpu_seconds"])
            else:
                errors[tool] = r.get("error", "failed")
    out = {t: {"error": errors[t]} if t in errors else
           {"median_s": statistics.median(times[t]), "runs": times[t], "median_cpu_s": statistics.median(cpu[t]),
            "cpu_runs": cpu[t]} for t in tools}
    if all("median_s" in out[t] for t in tools) and len(tools) == 2:  # prunekit / peer: wall and CPU time
        out["ratio"] = out[tools[0]]["median_s"] / out[tools[1]]["median_s"]
        out["cpu_ratio"] = out[tools[0]]["median_cpu_s"] / out[tools[1]]["median_cpu_s"]
    return out


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default="torchvision", choices=["torchvision", "timm", "hf"])
    ap.add_argument("--summary", action="store_true", help="only write SUMMARY.md from the zoos' results.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="results folder (default: results/engine, or results/engine/<zoo>)")
    ap.add_argument("--resume", action="store_true", help="keep the models already in <out>/rows.jsonl")
    ap.add_argument("--skip-timings", action="store_true")
    ap.add_argument("--no-run", action="store_true",
                    help="with --resume: only write results.json/results.md from the rows in <out>/rows.jsonl "
                         "(a run stopped part way), running no model")
    ap.add_argument("--timings-only", action="store_true",
                    help="only (re)measure timings.json; results.json/.md get the new timings, their rows stay")
    ap.add_argument("--redo", nargs="*", default=[], choices=["prunekit", "torch_pruning"],
                    help="with --resume: run these tools again on every model, keeping the other results")
    ap.add_argument("--no-peer", action="store_true", help="skip torch-pruning even when installed")
    ap.add_argument("--limit-seconds", type=float, default=LIMITS["seconds"], help="per tool and model")
    ap.add_argument("--limit-memory-gb", type=float, default=LIMITS["memory_gb"],
                    help="address space per tool and model")
    return ap.parse_args(argv)


def _timings(args, out: Path, peer: bool) -> dict:
    tfile = out / "timings.json"
    if args.resume and tfile.exists():
        return json.loads(tfile.read_text())
    if args.zoo != "torchvision" or args.quick or args.skip_timings:
        return {}
    timings = {"threads": torch.get_num_threads(), "environment": environment_info()}
    for name in ("resnet50", "vit_b_16"):
        timings[name] = timing(name, ["prunekit"] + (["torch_pruning"] if peer else []), args.repeats)
    tfile.write_text(json.dumps(timings, indent=1))
    return timings


def _run_rows(args, out: Path, names: list[str], tools: list[str]) -> list[dict]:
    rows = []
    if args.resume and (out / "rows.jsonl").exists():
        rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]
    done = {r["model"] for r in rows}
    for row in rows if args.redo else []:
        for tool in args.redo:
            res = guarded(model_row, tool, args.zoo, row["model"])
            res.pop("input", None)
            row[tool] = res
        print(json.dumps(row), flush=True)
    if args.redo:
        _write_rows(out / "rows.jsonl", rows)
    for name in names:
        if name in done or args.no_run:
            continue
        row = {"model": name, "input": None}
        for tool in tools:
            res = guarded(model_row, tool, args.zoo, name)
            row["input"] = row["input"] or res.pop("input", None)
            res.pop("input", None)
            row[tool] = res
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / "rows.jsonl", "a") as f:  # one line per model, so a long run can resume
            f.write(json.dumps(row) + "\n")
    rows.sort(key=lambda r: names.index(r["model"]) if r["model"] in names else len(names))
    return rows


def summarize(rows: list[dict], peer: bool) -> dict:
    pk_rows = [r["prunekit"] for r in rows]
    summary = {"models": len(rows), "prunekit_ok": sum(r.get("ok", False) for r in pk_rows),
               "prunekit_verified": sum(r.get("ok", False) and r.get("verified", False) for r in pk_rows),
               "prunekit_exact": sum(r.get("exact", False) for r in pk_rows)}
    if any("wrong_exact" in r for r in pk_rows):
        summary["prunekit_wrong_exact"] = sum(r.get("wrong_exact", False) for r in pk_rows)
    if peer:
        summary["torch_pruning_ok"] = sum(r.get("torch_pruning", {}).get("ok", False) for r in rows)
    return summary


def _input_text(shape) -> str:
    if isinstance(shape, dict):
        return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shape.items())
    return "x".join(map(str, (shape or [])[2:]))


def write_results(out: Path, rows: list[dict], timings: dict, peer: bool, command: str) -> dict:
    summary = summarize(rows, peer)
    result = {"summary": summary, "rows": rows, "timings": timings, "command": command,
              "environment": environment_info()}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    table = [{"model": r["model"], "input": _input_text(r["input"]),
              "prunekit": "ok" if r["prunekit"].get("ok") else r["prunekit"].get("error", "fail")[:60],
              "verify": ("exact" if r["prunekit"].get("exact") else "approx") if r["prunekit"].get("ok") else "-",
              "params kept": f"{r['prunekit'].get('params_kept', float('nan')):.2f}",
              **({"torch-pruning": "ok" if r.get("torch_pruning", {}).get("ok") else
                  r.get("torch_pruning", {}).get("error", "fail")[:60]} if peer else {})} for r in rows]
    cols = list(table[0].keys()) if table else []
    md = ["# Engine coverage and speed", "", f"Command: `{command}`", "",
          f"Machine: {json.dumps(result['environment'].get('machine', {}))}", "",
          f"Versions: {json.dumps(result['environment'].get('versions', {}))}", "", "## Summary", "",
          "```", json.dumps(summary, indent=1), "```", ""]
    if timings:
        md += [f"## trace + plan + apply at 224x224, 30% uniform (median seconds, {timings.get('threads', '?')} "
               "thread(s), tools alternated, each run a fresh process)", ""]
        if timings.get("command"):
            md += [f"Measured by `{timings['command']}`.", ""]
        for n, t in timings.items():
            if not isinstance(t, dict) or "prunekit" not in t:
                continue  # threads, environment
            md.append(f"- {n}: " + ", ".join(f"{tool} {v.get('median_s', float('nan')):.2f} s"
                                            if "median_s" in v else f"{tool} {v.get('error')}"
                                            for tool, v in t.items() if isinstance(v, dict))
                      + (f" (prunekit / torch-pruning = {t['ratio']:.2f} wall, {t['cpu_ratio']:.2f} CPU)"
                         if "ratio" in t else ""))
        md.append("")
    md += ["## Per model (30% uniform L1, outputs kept)", "", markdown_table(table, cols)]
    (out / "results.md").write_text("\n".join(md) + "\n")
    return summary


def write_summary(root: Path = RESULTS) -> str:
    """SUMMARY.md: each zoo's summary line side by side, from the results.json files present."""
    lines = ["# Engine coverage: three zoos, prunekit and torch-pruning side by side", "",
             "30% uniform L1, outputs kept, random init, smallest input each model accepts. `verified`: runs, "
             "keeps output shapes, and the original with `plan.removals()` zeroed gives the pruned model's "
             "outputs whenever the plan claims exact (else the plan names why it is approximate).", "",
             "| zoo | models | prunekit ok | prunekit verified | exact | wrong exact | torch-pruning ok | command |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for zoo, path in [("torchvision", root / "results.json"), ("timm", root / "timm" / "results.json"),
                      ("hf", root / "hf" / "results.json")]:
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        s = res["summary"]
        lines.append(f"| {zoo} | {s['models']} | {s['prunekit_ok']} | {s['prunekit_verified']} | "
                     f"{s['prunekit_exact']} | {s.get('prunekit_wrong_exact', '-')} | "
                     f"{s.get('torch_pruning_ok', '-')} | `{res['command']}` |")
    lines += ["", "`command` is the last command that wrote each zoo's results; README.md here says how every row "
              "was made (resumed parts, redone tools, dates, machine load)."]
    text = "\n".join(lines) + "\n"
    (root / "SUMMARY.md").write_text(text)
    return text


def _timings_only(args, out: Path, peer: bool, argv) -> int:
    """Measure timings.json again (with the command that did it) and put it into the existing results."""
    if args.zoo != "torchvision" or args.resume:
        raise SystemExit("--timings-only measures the torchvision timings afresh: drop --zoo/--resume")
    timings = {"command": " ".join(["python", "benchmarks/engine.py", *(sys.argv[1:] if argv is None else argv)]),
               **_timings(args, out, peer)}
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    if (out / "results.json").exists():
        old = json.loads((out / "results.json").read_text())
        write_results(out, old["rows"], timings, peer, old["command"])
    print(json.dumps(timings, indent=1))
    return 0


def main(argv=None) -> int:
    args = _args(argv)
    if args.summary:
        print(write_summary())
        return 0
    LIMITS.update(seconds=args.limit_seconds, memory_gb=args.limit_memory_gb)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        import torch_pruning  # noqa: F401

        peer = not args.no_peer
    except ImportError:
        peer = False
    names = args.models or (engine_zoos.QUICK[args.zoo] if args.quick else engine_zoos.names(args.zoo))
    out = Path(args.out) if args.out else (RESULTS if args.zoo == "torchvision" else RESULTS / args.zoo)
    out.mkdir(parents=True, exist_ok=True)
    if args.timings_only:
        return _timings_only(args, out, peer, argv)
    timings = _timings(args, out, peer)
    if args.no_run and not (args.resume and (out / "rows.jsonl").exists()):
        raise SystemExit(f"--no-run needs --resume and rows in {out / 'rows.jsonl'}")
    rows = _run_rows(args, out, names, ["prunekit"] + (["torch_pruning"] if peer else []))
    command = " ".join(["python", "benchmarks/engine.py", *(sys.argv[1:] if argv is None else argv)])
    print(json.dumps(write_results(out, rows, timings, peer, command)))
    wrong = [r["model"] for r in rows if r["prunekit"].get("wrong_exact")]
    if wrong:  # a wrong "exact" is the worst bug: the run fails and names the models (rows are kept)
        print(f"prunekit claims exact where the zeroing check disagrees: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
