"""The `compression` benchmark suite: the same as `prunekit bench compression [flags]` (see prunekit.bench.compression).

    python benchmarks/compression.py            # default size, writes benchmarks/results/compression/
    python benchmarks/compression.py --quick    # minutes-sized smoke run (--out elsewhere to keep the committed results)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prunekit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "compression", *sys.argv[1:]]))
