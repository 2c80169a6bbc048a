"""`prunekit bench redundancy --quick`: one row per method (and the torch-pruning peer), sane numbers, plots."""
from __future__ import annotations

import importlib.util

import pytest

from prunekit.bench.redundancy import METHODS, PEER
from prunekit.cli import main

from .helpers import check_folder, check_pruned_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_redundancy_quick(tmp_path):
    out = tmp_path / "redundancy"
    assert main(["bench", "redundancy", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = check_folder(out, "redundancy")
    rows = results["results"]
    expected = set(METHODS) | ({PEER} if importlib.util.find_spec("torch_pruning") else set())
    assert {r["method"] for r in rows} == expected and len(rows) == len(expected)
    assert all(r["arch"] == "resnet20" and r["target"] == 0.5 and r["n_seeds"] == 1 for r in rows)
    check_pruned_rows(rows, 0.5)
    srr = next(r for r in rows if r["method"] == "srr+l1")
    scratch = next(r for r in rows if r["method"].startswith("scratch"))
    assert scratch["macs_kept"] == pytest.approx(srr["macs_kept"])  # the control trains the same architecture
    assert {"accuracy_vs_macs_resnet20.png", "layer_widths_resnet20_50.png", "speedup_vs_mac_ratio.png"} <= set(
        results["plots"])
    # a second run reuses the cached base instead of training it again
    assert main(["bench", "redundancy", "--quick", "--out", str(tmp_path / "again"), "--cache-dir",
                 str(tmp_path / "cache"), "--no-peer"]) == 0
    again = check_folder(tmp_path / "again", "redundancy")
    assert again["info"]["bases"]["resnet20"]["train"]["cached"] is True
    assert again["info"]["bases"]["resnet20"]["top1"] == results["info"]["bases"]["resnet20"]["top1"]
