"""benchmarks/engine.py: coverage rows for real models, and the guard that turns a hang or a memory blow-up
of one tool into a row instead of killing the run."""
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # an importable name: the guarded children are spawned
    import engine as mod

    yield mod
    sys.path.remove(str(ROOT / "benchmarks"))


def _sleep(seconds):
    time.sleep(seconds)
    return {"ok": True}


def _allocate(gb):
    return {"ok": True, "n": len(bytearray(int(gb * 2**30)))}


def test_guard_turns_timeouts_and_memory_errors_into_rows(engine, monkeypatch):
    monkeypatch.setitem(engine.LIMITS, "seconds", 1.0)
    t0 = time.perf_counter()
    row = engine.guarded(_sleep, 30)
    assert row["ok"] is False and row["error"].startswith("timeout") and time.perf_counter() - t0 < 10
    monkeypatch.setitem(engine.LIMITS, "seconds", 60.0)
    monkeypatch.setitem(engine.LIMITS, "memory_gb", 4.0)
    row = engine.guarded(_allocate, 8)
    assert row == {"ok": False, "error": "MemoryError: "}
    assert engine.guarded(_allocate, 0.01) == {"ok": True, "n": int(0.01 * 2**30)}


def test_engine_script_rows_for_one_model(engine, tmp_path):
    assert engine.main(["--models", "squeezenet1_1", "--no-peer", "--skip-timings", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["summary"] == {"models": 1, "prunekit_ok": 1, "prunekit_verified": 1, "prunekit_exact": 1,
                                 "prunekit_wrong_exact": 0}
    row = result["rows"][0]
    assert row["input"] == [1, 3, 64, 64] or row["input"][2] >= 32
    assert 0.3 < row["prunekit"]["params_kept"] < 0.7 and row["prunekit"]["max_rel_diff"] < 1e-4
    assert "squeezenet1_1" in (tmp_path / "results.md").read_text()


def test_engine_script_timm_zoo_and_summary(engine, tmp_path):
    row = engine.model_row("prunekit", "timm", "test_nfnet")  # in this process: the spawned path is tested above
    # weight standardisation: the plan says approximate and why, and the zeroing check agrees it is not exact
    assert row["ok"] and not row["claims_exact"] and not row["wrong_exact"] and row["zeroing_rel_diff"] > 1e-3
    assert any("weight standardisation" in r for r in row["reasons"]) and row["input"] == [1, 3, 32, 32]
    (tmp_path / "timm").mkdir()
    summary = {"models": 1, "prunekit_ok": 1, "prunekit_verified": 1, "prunekit_exact": 0, "prunekit_wrong_exact": 0}
    (tmp_path / "timm" / "results.json").write_text(json.dumps({"summary": summary, "command": "cmd"}))
    text = engine.write_summary(tmp_path)
    assert "| timm | 1 | 1 | 1 | 0 | 0 | - | `cmd` |" in text and (tmp_path / "SUMMARY.md").read_text() == text


def test_engine_script_fails_on_a_wrong_exact_claim(engine, tmp_path, capsys):
    rows = [{"model": "m", "input": [1, 3, 32, 32], "prunekit": {"ok": True, "verified": False, "exact": True,
                                                                 "claims_exact": True, "wrong_exact": True}}]
    (tmp_path / "rows.jsonl").write_text(json.dumps(rows[0]) + "\n")
    args = ["--resume", "--models", "m", "--no-peer", "--skip-timings", "--out", str(tmp_path)]
    assert engine.main(args) == 1  # the row is kept (resumable), the run fails and names the model
    assert "zeroing check disagrees: m" in capsys.readouterr().err
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["prunekit_wrong_exact"] == 1
    # --no-run writes the results of a partial run from its rows: model "n" is not run, no row is added
    assert engine.main(args[:3] + ["n"] + args[3:] + ["--no-run"]) == 1
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 1
