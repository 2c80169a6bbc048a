"""Write tests/graph/timm_families.json: the smallest model (by parameter count) of every timm family.

A family is the module `timm.models.<family>` a model is registered from. Models are built on the meta
device (no memory, no initialisation), so the whole registry is counted in about ten minutes:

    python tests/graph/timm_families.py            # choose the models: rewrites the JSON next to this file
    python tests/graph/timm_families.py --time     # run timm_zoo.check on each in a fresh process: records
                                                   # its input, seconds, and `heavy` for the slowest ones
--time keeps the rows already timed (resume) unless --redo; --budget is the seconds the non-heavy rows may
take together (cheapest first); --time --mark-only sets `heavy` again from the recorded seconds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import timm
import torch
from timm.models import _registry

OUT = Path(__file__).with_suffix(".json")
# beyond the family sample: models issue 13 names (weight standardisation, width asserts, _safe_softmax)
EXTRA_MODELS = ["nfnet_l0", "bat_resnext26ts", "haloregnetz_b", "coatnext_nano_rw_224"]


def count(name: str) -> int | None:
    """Parameters of timm model `name` built on the meta device; None when it cannot be built there."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - a model that needs real tensors to build is left out of the choice
        return None
    return sum(p.numel() for p in model.parameters())


def families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in timm.list_models():
        out.setdefault(_registry._model_to_module[name], []).append(name)
    return out


def choose() -> int:
    rows = []
    for fam, names in sorted(families().items()):
        sized = [(n, count(n)) for n in names]
        ok = sorted((c, n) for n, c in sized if c is not None)
        if not ok:
            print(f"{fam}: no model builds on the meta device", file=sys.stderr)
            continue
        params, name = ok[0]
        cfg = timm.get_pretrained_cfg(name)
        size = list(cfg.input_size) if cfg is not None and cfg.input_size else [3, 224, 224]
        rows.append({"family": fam, "model": name, "params": params, "input_size": size,
                     "models_in_family": len(names)})
        print(f"{fam:28s} {name:40s} {params:>12,d}", flush=True)
    meta = {"timm": timm.__version__, "torch": torch.__version__, "command": "python tests/graph/timm_families.py"}
    sys.path.insert(0, str(Path(__file__).parent))
    from timm_zoo import extra_row

    extras = [{**extra_row(n), "params": count(n)} for n in EXTRA_MODELS]
    OUT.write_text(json.dumps({"meta": meta, "families": rows, "extras": extras}, indent=1) + "\n")
    return 0


def one(name: str) -> int:
    """Check one model (in this fresh process) and print the result as one JSON line."""
    sys.path.insert(0, str(Path(__file__).parent))
    import timm_zoo

    torch.set_num_threads(1)
    row = next(dict(r) for r in timm_zoo.FAMILIES + timm_zoo.EXTRAS if r["model"] == name)
    row.pop("input", None)
    try:
        res = timm_zoo.check(row)
    except Exception as e:  # noqa: BLE001 - recorded, the test will show it
        res = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    res.update(kwargs=row.get("kwargs", {}), input=row.get("input"))
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def time_rows(budget: float, redo: bool, limit: float, mark_only: bool = False) -> int:
    data = json.loads(OUT.read_text())
    order = data["families"] + data["extras"]  # smallest first, so a run cut short has timed the most rows
    for row in sorted(order, key=lambda r: r.get("params") or float("inf")):
        if mark_only or ("seconds" in row and not redo):
            continue
        try:
            proc = subprocess.run([sys.executable, __file__, "--one", row["model"]], capture_output=True,
                                  text=True, timeout=limit)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            res = json.loads(line[7:]) if line else {"error": proc.stderr.strip().splitlines()[-1:]}
        except subprocess.TimeoutExpired:
            res = {"error": f"more than {limit:.0f} s", "seconds": limit}
        wrong = bool(res.get("exact_claim") and res.get("zeroing_rel_diff", 0.0) > 1e-4)
        verdict = "WRONG EXACT" if wrong else "exact" if res.get("exact_claim") else "approximate"
        row.update(input=res.get("input"), kwargs=res.get("kwargs", {}), seconds=res.get("seconds", limit),
                   result=res.get("error") or verdict + (" (weak check)" if res.get("verify_weak") else ""))
        print(f"{row['model']:32s} {row['seconds']:7.1f} s  {row['result']}", flush=True)
        OUT.write_text(json.dumps(data, indent=1) + "\n")
    spent = 0.0  # cheapest first while the budget lasts; a row not timed yet counts as heavy
    for row in sorted(data["families"] + data["extras"], key=lambda r: r.get("seconds", float("inf"))):
        spent += row.get("seconds", float("inf"))
        row["heavy"] = spent > budget
    data["meta"]["heavy_budget_s"] = budget
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", action="store_true", help="time each model's check, mark the slowest heavy")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for the non-heavy rows together")
    ap.add_argument("--redo", action="store_true", help="with --time: time every row again")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds per model before it counts as heavy")
    ap.add_argument("--mark-only", action="store_true", help="with --time: only set `heavy` from the seconds")
    args = ap.parse_args(argv)
    if args.one:
        return one(args.one)
    if args.time:
        return time_rows(args.budget, args.redo, args.limit, args.mark_only)
    return choose()


if __name__ == "__main__":
    sys.exit(main())
