"""What the classic rank-prune-fine-tune loop pays for ranking, per criterion, and what coarse ranking saves at the
paper's setting (issue 16 point 3), from measured per-batch costs on full-width ResNet-20 (Fashion-MNIST, batch
128, one thread):

- a training step (forward, loss, backward, SGD step), alone and with coarse ranking's hooks (taylor, apoz);
- a batch of a separate ranking pass with prunekit's data-driven criteria (taylor, apoz, hrank), through the same
  `score_channels` the iterative loop calls.

Every measurement is a round of `--batches` batches, and the rounds of all variants alternate, so machine load
falls on all of them alike; medians over `--rounds`. The projection: S prunes, each preceded by a ranking pass over
P batches (default: the whole training set, 469 batches), within T optimizer steps (default 3 epochs):
iterative = S * P * rank + T * step, coarse = T * (step + hooks).

    python benchmarks/coarse_costs.py                  # writes benchmarks/results/coarse/costs.{json,md}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from prunekit.bench import common, suite_config  # noqa: E402
from prunekit.bench.output import command_line, environment  # noqa: E402
from prunekit.criteria.activations import ActivationRecorder  # noqa: E402
from prunekit.models import create  # noqa: E402
from prunekit.planning import PlanConfig, score_channels  # noqa: E402
from prunekit.probing import trace  # noqa: E402
from prunekit.train import seed_everything  # noqa: E402
from prunekit.utils import atomic_write  # noqa: E402

RANKING = ("taylor", "apoz", "hrank")  # separate-pass criteria of the iterative loop
HOOKED = ("taylor", "apoz")            # criteria coarse ranking accumulates during training (hrank: not offered)


def _steps(model, opt, batches) -> float:
    """Seconds per training step over `batches` (coarse ranking's hooks record when a recorder is entered)."""
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / len(batches)


def measure(args) -> dict:
    seed_everything(0)
    cfg = suite_config("coarse", full=True, train_samples=args.batches * 128 * 2)
    data = common.load_data(cfg)
    loader = data.train_loader(0)
    batches = [b for _, b in zip(range(args.batches), loader)]
    model = create("resnet20", num_classes=10, in_channels=1, width=1.0).train()
    graph = trace(model, data.example())
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the weights barely move
    samples: dict[str, list[float]] = {}
    _steps(model, opt, batches)  # warm-up round (allocator, first-call costs), not timed
    for r in range(args.rounds):
        samples.setdefault("train step", []).append(_steps(model, opt, batches))
        for crit in HOOKED:
            rec = ActivationRecorder(model, graph, (crit,), relu=True)
            with rec:
                samples.setdefault(f"train step + {crit} hooks", []).append(_steps(model, opt, batches))
        for crit in RANKING:
            t0 = time.perf_counter()
            score_channels(model, graph, PlanConfig(ratio=0.5, criterion=crit), batches, len(batches))
            samples.setdefault(f"ranking batch ({crit})", []).append((time.perf_counter() - t0) / len(batches))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in samples.items()),
              flush=True)
    return {k: statistics.median(v) for k, v in samples.items()}


def project(costs: dict, prunes: int, pass_batches: int, steps: int) -> list[dict]:
    step = costs["train step"]
    rows = []
    for crit in RANKING:
        rank = costs[f"ranking batch ({crit})"]
        iterative = prunes * pass_batches * rank + steps * step
        hooked = costs.get(f"train step + {crit} hooks")
        coarse = steps * hooked if hooked else None
        rows.append({"criterion": crit, "ranking_batch_s": rank, "rank_over_step": rank / step,
                     "iterative_s": iterative, "iterative_ranking_share": prunes * pass_batches * rank / iterative,
                     "coarse_s": coarse, "saved": None if coarse is None else 1 - coarse / iterative})
    return rows


def render(res: dict) -> str:
    p = res["projection_settings"]
    lines = ["# Ranking cost of the classic loop and coarse ranking's saving (measured per batch, projected)", "",
             f"Full-width ResNet-20, Fashion-MNIST batches of 128, one thread; medians of {res['rounds']} alternated "
             f"rounds of {res['batches']} batches. Projection: {p['prunes']} prunes, a ranking pass of "
             f"{p['pass_batches']} batches (the whole training set) before each, {p['steps']} optimizer steps "
             "(3 epochs) in all.", "", "| measurement | seconds per batch |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["costs"].items()]
    lines += ["", "| criterion | ranking batch / training step | classic loop: ranking share | coarse: time saved |",
              "|---|---:|---:|---:|"]
    for r in res["projection"]:
        saved = "- (coarse does not accumulate hrank)" if r["saved"] is None else f"{100 * r['saved']:.1f}%"
        lines.append(f"| {r['criterion']} | {r['rank_over_step']:.2f} | {100 * r['iterative_ranking_share']:.1f}% "
                     f"| {saved} |")
    lines += ["", "## Command", "", "```", res["command"], "```", "",
              f"torch {res['versions'].get('torch')}, {res['machine'].get('cpu')}; load average at the end "
              f"{res['machine'].get('load_average_at_end')}.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prunes", type=int, default=8)
    ap.add_argument("--pass-batches", type=int, default=469)
    ap.add_argument("--steps", type=int, default=1407)
    ap.add_argument("--out", default="benchmarks/results/coarse")
    args = ap.parse_args()
    torch.set_num_threads(1)
    costs = measure(args)
    env = environment()
    res = {"command": command_line(), "batches": args.batches, "rounds": args.rounds, "costs": costs,
           "projection_settings": {"prunes": args.prunes, "pass_batches": args.pass_batches, "steps": args.steps},
           "projection": project(costs, args.prunes, args.pass_batches, args.steps),
           "versions": env["versions"], "machine": env["machine"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "costs.json", json.dumps(res, indent=1) + "\n", overwrite=True)
    atomic_write(out / "costs.md", render(res), overwrite=True)
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
