"""The `speed` benchmark suite: the same as `prunekit bench speed [flags]` (see prunekit.bench.speed).

    python benchmarks/speed.py            # default size, writes benchmarks/results/speed/
    python benchmarks/speed.py --quick    # minutes-sized smoke run (--out elsewhere to keep the committed results)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prunekit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "speed", *sys.argv[1:]]))
