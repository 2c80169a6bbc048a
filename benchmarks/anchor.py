"""Accuracy anchor (issue 16 point 5): prunekit's methods against Torch-Pruning at one published setting.

Setting: ResNet-20 with 1x1 conv + BN projection shortcuts (prunekit's `resnet20`), Fashion-MNIST (all 60,000
training images, no validation split, random crop (4 px padding) + horizontal flip), base trained 8 epochs with
SGD lr 0.1 cosine (batch 128, weight decay 5e-4, Nesterov momentum 0.9); every row prunes that one base to 25% of
its MACs and fine-tunes exactly 3 epochs at lr 0.01 cosine with the base's batch size, weight decay and
augmentation, then reports the test top-1 on the 10,000 test images.

prunekit rows run through `prunekit.workflow.run_workflow` (base loaded from the cached file, prune, recover,
measure). Torch-Pruning rows (`tp_*`) prune the same base with torch-pruning's MetaPruner (ratio bisected to the
MAC target, counted by prunekit) and are fine-tuned by the same recovery code with the same settings, seed and
batch order. Rows are appended to rows.jsonl as they finish; `--resume` skips the finished ones, so a run can be
split over processes (one per core) and sessions. results.json / results.md are rewritten after every row.

    python benchmarks/anchor.py --seeds 0 1 --resume
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

import prunekit as pk
from prunekit.bench import peer
from prunekit.methods.common import Recovery, recover
from prunekit.report.schema import environment_info
from prunekit.train import evaluate, seed_everything
from prunekit.utils import atomic_write
from prunekit.workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, RecoverConfig, WorkflowConfig,
                               run_workflow)
from prunekit.workflow.base import base_key, get_base, load_data

OUT = Path("benchmarks/results/anchor")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunekit" / "anchor"
TARGET = 0.25
# Torch-Pruning on this setting (quoted in issue 16): base 93.00%, pruned to 25% MACs + 3 epochs at lr 0.01
PEER_PUBLISHED = {"base": 93.00, "tp_l1_local": 92.30, "tp_group_l2_local": 92.04, "tp_group_l2_global": 92.12,
                  "tp_random": 91.66}
GOAL = 92.8
FIRST_COMMAND = "python benchmarks/anchor.py --seeds 0 --resume"  # rows written before rows carried their command
# prunekit rows: the workflow's prune section for each (criterion, policy, method)
PK_ROWS = {
    "l1_uniform": {"method": "oneshot", "criterion": "l1", "policy": "uniform"},
    "taylor_global": {"method": "oneshot", "criterion": "taylor", "policy": "global"},
    "srr": {"method": "srr"},
    "auto": {"method": "oneshot", "criterion": "l1", "policy": "auto"},
    # the same epochs spent in the classic loop: prune to 75%, an epoch, to 50%, an epoch, to 25%, the rest
    "iterative_l1": {"method": "iterative", "criterion": "l1", "policy": "uniform",
                     "options": {"steps": 3, "step_epochs": 1}},
}
# Torch-Pruning rows: (importance, global ranking)
TP_ROWS = {"tp_l1_local": ("l1", False), "tp_group_l2_global": ("group_l2", True),
           "tp_group_l2_local": ("group_l2", False)}
# the best prunekit row (by mean top-1 of the finished rows) again, distilling from the base:
# (temperature, distill_weight = the KL term's share of the loss)
KD_ROWS = {"kd": (4.0, 0.5), "kd_strong": (4.0, 0.9)}
ALL_ROWS = [*PK_ROWS, *KD_ROWS, *TP_ROWS]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created), so that processes sharing the output folder take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_config(a: argparse.Namespace) -> DataConfig:
    return DataConfig("fashion-mnist", data_dir=a.data_dir, val_size=0, batch_size=128, augment=True,
                      train_subset=a.train_subset, test_subset=a.test_subset)


def base_file(a: argparse.Namespace) -> Path:
    """The cached base: trained once (seed 0) by the workflow's base step, then written with pk.save."""
    desc = {"model": "resnet20", "data": data_config(a).__dict__, "epochs": a.base_epochs, "lr": 0.1,
            "max_steps": a.max_steps}
    path = Path(a.cache) / f"resnet20-fmnist-{base_key(desc)}.safetensors"
    with locked(path.with_suffix(".lock")):
        if not path.exists():
            cfg = WorkflowConfig(model=ModelConfig("resnet20"), data=data_config(a),
                                 base=BaseConfig(epochs=a.base_epochs, lr=0.1, cache_dir=str(Path(a.cache) / "bases")),
                                 prune=PruneConfig(target={"macs": TARGET}), seed=0, device="cpu",
                                 max_steps_per_epoch=a.max_steps, latency_runs=0)
            model, _, _, info = get_base(cfg, load_data(cfg.data, 0), log)
            pk.save(model, path, extra={"input_shape": [1, 28, 28], "base": {k: v for k, v in info.items()
                                                                               if k != "history"}})
            hist = info.get("history") or []
            (path.with_suffix(".history.json")).write_text(json.dumps(hist, indent=1, default=str) + "\n")
    return path


def final_epochs(a: argparse.Namespace, prune: dict[str, Any]) -> int:
    """The recovery epochs after the last prune: the whole budget (--epochs), less the epochs an iterative row
    spends between its prunes, so that every row trains as many epochs."""
    o = prune.get("options") or {}
    between = (o["steps"] - 1) * o["step_epochs"] if prune.get("method") == "iterative" else 0
    if a.epochs - between < 1:
        raise SystemExit(f"anchor: --epochs {a.epochs} leaves no epoch after the iterative row's last prune "
                         f"({between} between its prunes)")
    return a.epochs - between


def workflow_config(a: argparse.Namespace, base: Path, prune: dict[str, Any], kd: tuple[float, float] | None,
                    seed: int) -> WorkflowConfig:
    """The run of one prunekit row; `kd`: (temperature, distill_weight) to distil from the base, or None."""
    t, w = kd or (4.0, 0.5)
    epochs = final_epochs(a, prune)
    return WorkflowConfig(data=data_config(a), base=BaseConfig(path=str(base)),
                          prune=PruneConfig(target={"macs": TARGET}, **prune),
                          recover=RecoverConfig(finetune_epochs=epochs, lr=a.lr, distill=kd is not None,
                                                temperature=t, distill_weight=w),
                          seed=seed, device="cpu", max_steps_per_epoch=a.max_steps, latency_runs=0)


def run_prunekit(a: argparse.Namespace, base: Path, prune: dict[str, Any], kd: tuple[float, float] | None,
                 seed: int) -> dict[str, Any]:
    res = run_workflow(workflow_config(a, base, prune, kd, seed), log=log)
    b, af = res.before, res.after
    rep = res.report
    hist = rep.get("history") or []
    return {"top1": 100 * af["top1"], "base_top1": 100 * b["top1"], "macs_kept": af["macs"] / b["macs"],
            "params_kept": af["params"] / b["params"], "macs": af["macs"], "params": af["params"],
            "prune": prune, "distill": kd is not None, "timings": rep.get("timings"),
            "finetune": [{k: e.get(k) for k in ("epoch", "train_loss", "train_top1", "lr")} for e in hist],
            "widths": rep["extra"]["widths"], "versions": rep.get("versions"), "machine": rep.get("machine")}


def tp_importance(kind: str):
    import torch_pruning as tp
    if kind == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    return tp.importance.GroupMagnitudeImportance(p=2)


def tp_prune(model: nn.Module, example: torch.Tensor, kind: str, global_pruning: bool
             ) -> tuple[nn.Module, dict[str, Any]]:
    """Torch-Pruning's MetaPruner on a copy of `model`, its pruning_ratio bisected to the largest one that keeps
    at most TARGET of the MACs (prunekit.bench.peer); the classifier is left whole, at most 90% of a layer goes."""
    pruned, info = peer.prune_to_macs(model, example, TARGET, global_pruning=global_pruning, iterations=14,
                                      importance=tp_importance(kind))
    if info["macs_kept"] > TARGET + 1e-9:
        raise RuntimeError(f"torch-pruning ({kind}, global={global_pruning}) cannot reach {TARGET} of the MACs "
                           f"(kept {info['macs_kept']:.3f} at ratio {info['pruning_ratio']:.3f})")
    return pruned, info


def run_tp(a: argparse.Namespace, base: Path, name: str, seed: int) -> dict[str, Any]:
    """The peer row: same base file, data, seed and batch order as the workflow rows; prunekit's recovery."""
    cfg = workflow_config(a, base, {}, None, seed)
    data = load_data(cfg.data, seed)
    model = pk.load(base).eval()
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    pruned, info = tp_prune(model, example, *TP_ROWS[name])
    t_prune = time.perf_counter() - t0
    seed_everything(seed)
    data.reseed(seed)
    r = cfg.recover
    rec = Recovery(finetune_epochs=r.finetune_epochs, lr=r.lr, max_steps_per_epoch=cfg.max_steps_per_epoch,
                   seed=seed, device="cpu", log=log)
    done = recover(pruned.train(), None, data.loaders.train, None, rec)
    timings = {"prune": t_prune, done.phase: done.seconds}
    before, after = pk.count(model, example), pk.count(pruned, example)
    env = environment_info()
    return {"top1": 100 * evaluate(pruned, data.loaders.test, "cpu")["top1"],
            "base_top1": 100 * evaluate(model, data.loaders.test, "cpu")["top1"],
            "macs_kept": after.macs / before.macs, "params_kept": after.params / before.params,
            "macs": int(after.macs), "params": int(after.params), "torch_pruning": info,
            "distill": False, "timings": timings,
            "finetune": [{k: e.get(k) for k in ("epoch", "train_loss", "train_top1", "lr")}
                         for e in done.history], **env}


def base_digest(path: Path) -> str:
    """sha256 of the base file: every row records it, so rows made on another base (another machine trains
    a slightly different one from the same seed) are never summarised together."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def other_base_rows(rows: list[dict[str, Any]], digest: str) -> list[str]:
    """The rows (as "name seed N") made on a base other than the one with this digest."""
    return [f"{r['row']} seed {r['seed']}" for r in rows if r.get("base_sha256") != digest]


def read_rows(out: Path) -> list[dict[str, Any]]:
    f = out / "rows.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def kd_source(rows: list[dict[str, Any]]) -> str:
    """The prunekit row (of PK_ROWS) the distillation rows repeat: the one a finished one used, else the
    best by mean top-1 over the finished seeds."""
    for r in rows:
        if r["row"] in KD_ROWS:
            return r["kd_of"]
    means = {n: statistics.fmean(r["top1"] for r in rows if r["row"] == n) for n in PK_ROWS
             if any(r["row"] == n for r in rows)}
    if not means:
        raise RuntimeError(f"a distillation row needs a finished prunekit row first ({', '.join(PK_ROWS)})")
    return max(means, key=means.get)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in ALL_ROWS:
        rs = [r for r in rows if r["row"] == name]
        if not rs:
            continue
        tops = [r["top1"] for r in rs]
        out.append({"row": name, "seeds": [r["seed"] for r in rs], "top1": statistics.fmean(tops),
                    "top1_std": statistics.stdev(tops) if len(tops) > 1 else 0.0, "top1_each": tops,
                    "macs_kept": statistics.fmean(r["macs_kept"] for r in rs),
                    "params_kept": statistics.fmean(r["params_kept"] for r in rs),
                    "kd_of": rs[0].get("kd_of"), "published_peer": PEER_PUBLISHED.get(name)})
    return out


def write_results(out: Path) -> None:
    rows = read_rows(out)
    commands = list(dict.fromkeys(r.get("command", FIRST_COMMAND) for r in rows))
    summary = summarise(rows)
    base = rows[0]["base_top1"] if rows else None
    env = {k: rows[-1].get(k) for k in ("versions", "machine")} if rows else {}
    if env:
        env["versions"] = {**(env["versions"] or {}), "torch-pruning": peer.version()}
    doc = {"setting": __doc__.split("\n\n")[1].replace("\n", " "), "target_macs": TARGET, "goal_top1": GOAL,
           "published_peer": PEER_PUBLISHED, "base_top1": base, "commands": commands, **env, "summary": summary}
    atomic_write(out / "results.json", json.dumps(doc, indent=1) + "\n", overwrite=True)
    lines = ["# Accuracy anchor: ResNet-20 (1x1 projection shortcuts), Fashion-MNIST, 25% of MACs", "",
             doc["setting"], "", "Commands (rows.jsonl records each row's): " + "; ".join(f"`{c}`" for c in commands), "",
             f"Base (8 epochs, seed 0): {base:.2f}% top-1 (Torch-Pruning's published base on this setting: "
             f"{PEER_PUBLISHED['base']:.2f}%)." if base is not None else "No rows yet.", "",
             "| row | what | seeds | top-1 % (mean +- std) | each | MACs kept | params kept | published peer |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['row']} | {describe(s)} | {len(s['seeds'])} | {s['top1']:.2f} +- {s['top1_std']:.2f} | "
                     f"{', '.join(f'{t:.2f}' for t in s['top1_each'])} | {s['macs_kept']:.3f} | "
                     f"{s['params_kept']:.3f} | {s['published_peer'] if s['published_peer'] else ''} |")
    lines += ["", "Every row: the same base file, the same fine-tuning (3 epochs, lr 0.01 cosine, SGD Nesterov 0.9, weight "
              "decay 5e-4, batch 128, crop + flip, no label smoothing) and, per seed, the same batch order. "
              "`auto` searches its per-group widths first (BatchNorm-recalibrated candidates scored on training "
              "batches, its finalists fine-tuned 40 steps each on copies): extra compute before pruning, but the "
              "pruned model it returns gets the same 3 epochs as the others. `kd` adds Hinton distillation from "
              "the base (loss = (1 - a) CE + a T^2 KL, recorded per row as temperature / distill_weight) to "
              "those 3 epochs. `tp_*` rows: torch-pruning's MetaPruner (MagnitudeImportance(p=1) per layer, or "
              "GroupMagnitudeImportance(p=2) per layer / global), pruning ratio bisected to the largest that keeps "
              "<= 25% of the MACs, classifier left whole, at most 90% of a layer; fine-tuned by prunekit's "
              "recovery code with the settings above. The published peer column is Torch-Pruning's own "
              "measurement on this setting (its own base and training code).",
              "", f"Goal: best prunekit row >= {GOAL}% (the peer's published best + 0.5 points).",
              f"Versions: {env.get('versions')}; machine: {env.get('machine')}.",
              "Load: each row in rows.jsonl records the 1-minute load average before and after it (two cores, "
              "shared with other jobs; accuracy does not depend on it, only the timings do)."]
    atomic_write(out / "results.md", "\n".join(lines) + "\n", overwrite=True)


def describe(s: dict[str, Any]) -> str:
    name = s["row"]
    if name in TP_ROWS:
        kind, glob = TP_ROWS[name]
        return f"Torch-Pruning {kind} {'global' if glob else 'local'} on our base, our fine-tuning"
    if name in KD_ROWS:
        t, w = KD_ROWS[name]
        return f"{s['kd_of']} + distillation from the base (T {t:g}, weight {w:g})"
    p = PK_ROWS[name]
    what = f"{p['method']} {p.get('criterion', 'l1')} {p.get('policy', 'srr')}"
    if p["method"] == "iterative":
        o = p["options"]
        what += (f" ({o['steps']} prunes, {o['step_epochs']} epoch after each but the last, then the rest of "
                 "the same epochs)")
    return what


def run_row(a: argparse.Namespace, base: Path, name: str, seed: int, out: Path, command: str) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if name in TP_ROWS:
        row = run_tp(a, base, name, seed)
    elif name in KD_ROWS:
        with locked(out / "rows.jsonl"):
            src = kd_source(read_rows(out))
        t, w = KD_ROWS[name]
        extra = {"kd_of": src, "temperature": t, "distill_weight": w}
        row = run_prunekit(a, base, PK_ROWS[src], KD_ROWS[name], seed)
    else:
        row = run_prunekit(a, base, PK_ROWS[name], None, seed)
    return {"row": name, "seed": seed, "command": command, "base_sha256": base_digest(base), **extra, **row,
            "wall_s": time.perf_counter() - t0,
            "load_before": load0, "load_after": os.getloadavg()[0],
            "budget": {"finetune_epochs": a.epochs, "lr": a.lr, "max_steps": a.max_steps,
                       "train_subset": a.train_subset}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="+", default=ALL_ROWS, choices=ALL_ROWS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--cache", type=Path, default=CACHE, help="where the trained base is kept")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--resume", action="store_true", help="skip rows already in rows.jsonl")
    p.add_argument("--base-only", action="store_true", help="train (or find) the base and stop")
    p.add_argument("--report-only", action="store_true", help="rewrite results.json / results.md from rows.jsonl")
    p.add_argument("--base-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    p.add_argument("--train-subset", type=int, default=None, help="quick runs only")
    p.add_argument("--test-subset", type=int, default=None, help="quick runs only")
    p.add_argument("--max-steps", type=int, default=None, help="quick runs only: steps per epoch")
    a = p.parse_args(argv)
    command = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    a.out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        with locked(a.out / "rows.jsonl"):
            write_results(a.out)
        return
    done = {(r["row"], r["seed"]) for r in read_rows(a.out)}
    if done and not a.resume and not a.base_only:
        raise SystemExit(f"{a.out / 'rows.jsonl'} holds {len(done)} finished row(s): pass --resume to continue "
                         f"it, or choose another --out")
    base = base_file(a)
    log(f"base: {base}")
    if a.base_only:
        return
    other = other_base_rows(read_rows(a.out), base_digest(base))
    if other:
        raise SystemExit(f"{a.out / 'rows.jsonl'}: {len(other)} row(s) were made on another base than {base} "
                         f"({', '.join(other)}); move them to another file or choose another --out")
    for seed in a.seeds:
        for name in a.rows:
            with locked(a.out / "rows.jsonl"):
                if (name, seed) in {(r["row"], r["seed"]) for r in read_rows(a.out)}:
                    log(f"{name} seed {seed}: done already")
                    continue
            log(f"{name} seed {seed}: start")
            row = run_row(a, base, name, seed, a.out, command)
            with locked(a.out / "rows.jsonl"):
                with open(a.out / "rows.jsonl", "a") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
                write_results(a.out)
            log(f"{name} seed {seed}: top-1 {row['top1']:.2f}% at {row['macs_kept']:.3f} MACs "
                f"({row['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
