"""benchmarks/anchor.py on a tiny budget: a prunekit row, a Torch-Pruning row and the distillation row land in
rows.jsonl at the MAC target, --resume skips them, a rerun without --resume is refused, and so are rows made
on another base."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--train-subset", "256", "--test-subset", "128", "--base-epochs", "1", "--epochs", "1", "--max-steps", "2"]


@pytest.fixture(scope="module")
def anchor():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import anchor as mod

    yield mod
    sys.path.remove(str(ROOT / "benchmarks"))


def test_rows_resume_and_refusal(anchor, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--out", str(out), "--cache", str(cache), *QUICK]
    anchor.main(["--rows", "l1_uniform", "tp_l1_local", "kd", *args])
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["l1_uniform", "tp_l1_local", "kd"]
    assert rows[2]["kd_of"] == "l1_uniform" and rows[2]["distill"] is True
    assert abs(rows[0]["macs_kept"] - 0.25) < 0.01 and rows[1]["macs_kept"] <= 0.25
    assert all(0 <= r["top1"] <= 100 and r["base_top1"] == rows[0]["base_top1"] for r in rows)
    assert len(list(cache.glob("*.safetensors"))) == 1  # one base for every row
    results = json.loads((out / "results.json").read_text())
    assert [s["row"] for s in results["summary"]] == ["l1_uniform", "kd", "tp_l1_local"]
    assert "| kd | l1_uniform + distillation" in (out / "results.md").read_text()
    anchor.main(["--rows", "l1_uniform", "--resume", *args])  # finished: nothing is rerun
    assert len((out / "rows.jsonl").read_text().splitlines()) == 3
    with pytest.raises(SystemExit, match="--resume"):
        anchor.main(["--rows", "l1_uniform", *args])
    # a row made on another base (another machine trains a slightly different one) is refused by name
    digest = rows[0]["base_sha256"]
    assert len(digest) == 64 and all(r["base_sha256"] == digest for r in rows)
    lines = (out / "rows.jsonl").read_text().splitlines()
    moved = json.loads(lines[1])
    moved["base_sha256"] = "0" * 64
    (out / "rows.jsonl").write_text("\n".join([lines[0], json.dumps(moved), lines[2]]) + "\n")
    with pytest.raises(SystemExit, match=r"1 row\(s\) were made on another base .*\(tp_l1_local seed 0\)"):
        anchor.main(["--rows", "l1_uniform", "--resume", *args])


def test_iterative_row_spends_the_same_epochs(anchor, tmp_path):
    """The iterative row prunes 3 times with an epoch after each but the last, so its final recovery gets
    --epochs minus 2: every row trains as many epochs."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    epochs = QUICK.index("--epochs") + 1
    quick = [*QUICK[:epochs], "3", *QUICK[epochs + 1:]]
    anchor.main(["--rows", "iterative_l1", "--out", str(out), "--cache", str(cache), *quick])
    row = json.loads((out / "rows.jsonl").read_text().splitlines()[0])
    assert row["row"] == "iterative_l1" and abs(row["macs_kept"] - 0.25) < 0.01
    assert [e["epoch"] for e in row["finetune"]] == [1]  # 3 epochs in all: 2 between the prunes, 1 after
    assert "iterative l1 uniform (3 prunes, 1 epoch after each but the last" in (out / "results.md").read_text()
    with pytest.raises(SystemExit, match="--epochs 2 leaves no epoch after the iterative row's last prune"):
        anchor.main(["--rows", "iterative_l1", "--out", str(tmp_path / "o2"), "--cache", str(cache),
                     *QUICK[:epochs], "2", *QUICK[epochs + 1:]])
