"""Shared checks of a suite folder written by `prunekit bench <suite> --quick`."""
from __future__ import annotations

import json
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


def check_folder(out: Path, suite: str) -> dict:
    """results.json / runs.json / results.md / plots exist and agree; returns results.json."""
    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == suite
    assert results["budget"]["size"] == "quick"
    assert results["versions"]["torch"] and results["machine"]["cpu_count"]
    assert isinstance(results["results"], list) and results["results"]
    md = (out / "results.md").read_text()
    for part in ("| ", "## Budget", "## Command", "## Versions and machine", results["command"]):
        assert part in md
    assert md.count("\n|") >= len(results["results"]) + 2  # header, separator, one line per row (at least)
    runs = json.loads((out / "runs.json").read_text())
    assert isinstance(runs, list) and runs
    for name in results["plots"]:
        assert (out / name).read_bytes()[:8] == PNG, name
        assert f"]({name})" in md
    return results


def check_pruned_rows(rows: list[dict], target: float) -> None:
    for r in rows:
        assert 0.0 <= r["top1"] <= 1.0
        assert 0.2 < r["macs_kept"] <= target + 0.06, r  # lands on the target (small models: coarse steps)
        assert 0.0 < r["params_kept"] <= 1.0
        assert r.get("speedup") is None or r["speedup"] > 0
