"""`prunekit bench coarse --quick` and `prunekit bench admm --quick`: table shape and sanity."""
from __future__ import annotations

import pytest

from prunekit.cli import main

from .helpers import check_folder, check_pruned_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_coarse_quick(tmp_path):
    out = tmp_path / "coarse"
    assert main(["bench", "coarse", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = check_folder(out, "coarse")
    rows = {r["method"]: r for r in results["results"]}
    assert set(rows) == {"coarse", "iterative"}
    check_pruned_rows(list(rows.values()), 0.5)
    co, it = rows["coarse"], rows["iterative"]
    assert co["train_steps"] == it["train_steps"] == results["budget"]["finetune_steps_per_epoch"]
    assert co["ranking_batches"] == 0 and it["ranking_batches"] > 0  # coarse runs no ranking pass of its own
    assert 0 <= co["ranking_s"] <= co["total_s"] and 0 < it["ranking_s"] <= it["total_s"]
    assert co["saved"] == pytest.approx(1 - co["total_s"] / it["total_s"])
    assert "time_split.png" in results["plots"]


def test_admm_quick(tmp_path):
    out = tmp_path / "admm"
    assert main(["bench", "admm", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = check_folder(out, "admm")
    rows = {r["method"]: r for r in results["results"]}
    assert set(rows) == {"admm + l1", "one-shot l1", "one-shot l1, ADMM's steps", "iterative l1"}
    check_pruned_rows(list(rows.values()), 0.5)
    m = results["budget"]["finetune_steps_per_epoch"]
    k = results["budget"]["opt.iterations"]
    assert rows["one-shot l1"]["train_steps"] == m
    assert rows["admm + l1"]["train_steps"] == rows["one-shot l1, ADMM's steps"]["train_steps"] == (k + 1) * m
    assert rows["admm + l1"]["removed_norm"] is not None and rows["one-shot l1"]["removed_norm"] is None
    # ADMM and one-shot allocate the same uniform counts: the same architecture
    assert rows["admm + l1"]["macs_kept"] == pytest.approx(rows["one-shot l1"]["macs_kept"])
