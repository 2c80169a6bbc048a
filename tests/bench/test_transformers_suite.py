"""`prunekit bench transformers --quick`, causal-LM part: the LM trained here is saved as a transformers folder
and every row is a `run_hf_workflow` on it; its held-out text is the workflow's, never trained on."""
from __future__ import annotations

import json

import pytest

from prunekit.bench import run_suite
from prunekit.bench.transformers import text_config
from prunekit.bench.transformers import PRESETS
from prunekit.workflow import text_splits

pytestmark = pytest.mark.usefixtures("single_thread")


def test_lm_part_rows_are_workflow_runs_on_held_out_text(tmp_path):
    out = tmp_path / "lm"
    run_suite("transformers", quick=True, out=str(out), opts={"parts": ["lm"]})
    runs = json.loads((out / "runs.json").read_text())
    dense = next(r for r in runs if r["method"] == "dense")
    assert dense["ppl"] > 1.0
    pruned = [r for r in runs if r["method"] != "dense"]
    assert len(pruned) == 8  # 3 unstructured methods x (50%, 2:4) + 2 structured importances
    for r in pruned:
        assert r["ppl"] == pytest.approx(r["ppl_ratio"] * dense["ppl"], rel=1e-9)  # one dense reference
    for r in pruned:
        if r["pattern"] in ("50%", "2:4"):
            assert r["sparsity"] == pytest.approx(0.5, abs=0.01)
        else:
            assert 0.0 < r["params_kept"] < 1.0 and r["sparsity"] > 0.2
    # the LM trains on the train entries of the very split its rows are scored on
    opts = {**PRESETS["opts"], **PRESETS["quick_opts"]}
    splits = text_splits(text_config(opts), 0)
    assert not set(splits.train) & set(splits.heldout)
    results = json.loads((out / "results.json").read_text())
    assert results["info"]["splits"] == splits.to_dict()
    assert results["info"]["lm"]["heldout_entries"] == splits.to_dict()["heldout"]
