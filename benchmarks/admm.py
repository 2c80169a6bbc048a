"""The `admm` benchmark suite: the same as `prunekit bench admm [flags]` (see prunekit.bench.admm).

    python benchmarks/admm.py            # default size, writes benchmarks/results/admm/
    python benchmarks/admm.py --quick    # minutes-sized smoke run (--out elsewhere to keep the committed results)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prunekit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "admm", *sys.argv[1:]]))
