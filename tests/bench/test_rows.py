"""Resumable suite rows (bench/rows.py) and the rows running through run_workflow with an in-memory base."""
from __future__ import annotations

import json

import pytest
import torch

from prunekit.bench import suite_config, suite_module
from prunekit.cli import main
from prunekit.cli_cmds.bench import remove_if_rowless
from prunekit.bench.rows import ROWS_FILE, ResumeMismatchError, SuiteRows
from prunekit.models import create
from prunekit.workflow import ModelConfig, PruneConfig, WorkflowConfig, run_workflow


def test_resume_reruns_only_the_missing_row_with_the_same_numbers(tmp_path):
    out, cache = tmp_path / "coarse", tmp_path / "cache"
    cfg = suite_config("coarse", quick=True, out=str(out), cache_dir=str(cache), peer=False)
    first = suite_module("coarse").run(cfg)
    lines = (out / ROWS_FILE).read_text().splitlines()
    assert len(lines) == 3  # header + iterative + coarse
    dropped = json.loads(lines[-1])
    (out / ROWS_FILE).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # the last row cut mid-write
    again = suite_module("coarse").run(suite_config("coarse", quick=True, out=str(out), cache_dir=str(cache),
                                                    peer=False, resume=True))
    rows = [json.loads(ln) for ln in (out / ROWS_FILE).read_text().splitlines()[1:] ]
    rerun = [r for r in rows if r["method"] == dropped["method"]]
    assert len(rows) == 2 and len(rerun) == 1
    for key in ("top1", "macs", "params", "widths", "train_steps"):
        assert rerun[0][key] == dropped[key], key
    assert [r["top1"] for r in again["results"]] == [r["top1"] for r in first["results"]]
    # a resumed suite's time says what this run took and what its rows took in all
    total = sum(r["wall_s"] for r in rows) / 60
    assert f"Wall time of this (resumed) run: {again['wall_s'] / 60:.1f} min; its 2 rows took {total:.1f} min in all" \
        in (out / "results.md").read_text()


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = suite_config("admm", quick=True, out=str(tmp_path))
    SuiteRows(tmp_path, cfg, ("arch", "seed"))
    other = suite_config("admm", quick=True, out=str(tmp_path), finetune_lr=0.5)
    with pytest.raises(ResumeMismatchError, match="finetune_lr: 0.02 there, 0.5 now"):
        SuiteRows(tmp_path, other, ("arch", "seed"), resume=True)


def test_full_and_quick_together_are_refused():
    with pytest.raises(ValueError, match="either quick or full"):
        suite_config("redundancy", quick=True, full=True)
    full = suite_config("coarse", full=True)
    assert full.budget()["size"] == "full" and full.train_samples is None and full.finetune_steps is None
    assert full.score_batches == 0 and full.opts["prunes"] == 8 and full.base_epochs >= 8


def test_workflow_prunes_a_base_given_in_memory_and_refuses_another_arch():
    torch.manual_seed(0)
    base = create("resnet20", num_classes=10, in_channels=1, width=0.25)
    cfg = WorkflowConfig(model=ModelConfig("vgg11"), prune=PruneConfig(ratio=0.3), latency_runs=0, progress=False)
    with pytest.raises(ValueError, match="base_model is a resnet20"):
        run_workflow(cfg, base_model=base, log=lambda m: None)
    with pytest.raises(ValueError, match="without a registry spec"):
        run_workflow(cfg, base_model=torch.nn.Linear(2, 2), log=lambda m: None)


def test_cli_resume_and_full_are_for_resumable_suites_only(tmp_path, capsys):
    assert main(["bench", "quantize", "--resume", "--out", str(tmp_path / "s")]) == 2
    assert "not quantize" in capsys.readouterr().err
    assert main(["bench", "coarse", "--resume", "--out", str(tmp_path / "c")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["bench", "admm", "--quick", "--full", "--out", str(tmp_path / "a")]) == 2
    assert "either --quick or --full" in capsys.readouterr().err


def test_resume_of_finished_rows_reads_the_recorded_base_instead_of_retraining(tmp_path):
    """A new machine has no cached base: an architecture whose rows are all done is not retrained on --resume,
    its entry (top-1, counts, widths for the plots) comes from results.json; a record that contradicts the
    architecture is refused."""
    out = tmp_path / "coarse"
    first = suite_module("coarse").run(suite_config("coarse", quick=True, out=str(out),
                                                    cache_dir=str(tmp_path / "cache"), peer=False))
    fresh = tmp_path / "fresh-cache"
    again = suite_module("coarse").run(suite_config("coarse", quick=True, out=str(out), cache_dir=str(fresh),
                                                    peer=False, resume=True))
    assert not fresh.exists() or not any(fresh.iterdir())  # nothing trained
    base0, base1 = first["info"]["bases"]["resnet20"], again["info"]["bases"]["resnet20"]
    assert base1["top1"] == base0["top1"] and base1["macs"] == base0["macs"] and base1["params"] == base0["params"]
    assert base1["train"]["entry_from"] == str(out / "results.json")
    assert [r["top1"] for r in again["results"]] == [r["top1"] for r in first["results"]]
    assert any(p.startswith("layer_widths_resnet20") for p in again["plots"])
    rec = json.loads((out / "results.json").read_text())
    rec["info"]["bases"]["resnet20"]["macs"] += 1
    (out / "results.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="resnet20 base has .* MACs"):
        suite_module("coarse").run(suite_config("coarse", quick=True, out=str(out), cache_dir=str(fresh),
                                                peer=False, resume=True))


def test_a_stopped_run_removes_only_a_folder_without_rows(tmp_path):
    empty, kept = tmp_path / "empty", tmp_path / "kept"
    for d, lines in ((empty, ['{"suite": "admm"}']), (kept, ['{"suite": "admm"}', '{"top1": 0.9}'])):
        d.mkdir()
        (d / ROWS_FILE).write_text("\n".join(lines) + "\n")
        remove_if_rowless(d)
    assert not empty.exists()
    assert (kept / ROWS_FILE).read_text().splitlines()[1] == '{"top1": 0.9}'
