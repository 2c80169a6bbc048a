"""`prunekit bench quantize --quick`: every variant row, sizes from the files, latency per runtime."""
import json

import pytest

pytestmark = [pytest.mark.heavy, pytest.mark.usefixtures("single_thread")]   # ~40 s: base, prune, QAT, timing


def test_quick_suite_rows(tmp_path):
    from prunekit.bench import run_suite
    res = run_suite("quantize", quick=True, out=str(tmp_path / "q"), cache_dir=str(tmp_path / "cache"))
    rows = res["results"]
    assert [r["variant"] for r in rows] == ["dense fp32", "dense int8 (PTQ)", "pruned 50% fp32",
                                            "pruned 50% int8 (PTQ)", "pruned 50% int8 (QAT)"]
    dense, dense_int8 = rows[0], rows[1]
    assert dense["size_ratio"] == 1.0 and dense_int8["size_ratio"] > 1.0 and dense_int8["torch_b1"] is None
    assert all(r["ort_b1"] > 0 for r in rows) and rows[2]["macs_kept"] < 0.6
    assert rows[-1]["qat_steps"] == 2 and rows[1]["calib_batches"] == 2
    written = json.loads((tmp_path / "q" / "results.json").read_text())
    assert written["results"] == json.loads(json.dumps(rows))
    assert "Pruning + int8 quantization" in (tmp_path / "q" / "results.md").read_text()
