"""auto vs uniform / srr / global at equal measured latency on Fashion-MNIST ResNet-20 (`prunekit bench auto`).

    python benchmarks/auto.py                        # full run (~20-30 min on 2 CPU cores), writes
                                                     # benchmarks/results/auto/results.json + results.md
    python benchmarks/auto.py --quick --out /tmp/x   # smoke run, a few minutes

See src/prunekit/bench/auto.py for what is compared and how.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from prunekit.bench.auto import DEFAULT_OUT, add_arguments, cmd_bench_auto  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    if args.out == DEFAULT_OUT:
        args.out = str(ROOT / DEFAULT_OUT)
    return cmd_bench_auto(args)


if __name__ == "__main__":
    sys.exit(main())
