"""`prunekit analyze` and `prunekit prune` end to end on scikit-learn's digits (8x8 images, seconds)."""
from __future__ import annotations

import json

import pytest
import torch

import prunekit as pk
from prunekit.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


def test_analyze_prints_table_and_writes_chart(tmp_path, capsys):
    assert main(["analyze", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--out",
                 str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (tmp_path / "analyze.png").stat().st_size > 1000
    assert json.loads((tmp_path / "analysis.json").read_text()) == printed
    rows = printed["groups"]
    by = {r["group"]: r for r in rows}
    assert by["fc"]["prunable"] is False and by["fc"]["redundancy"] is None
    prunable = [r for r in rows if r["prunable"]]
    assert len(prunable) == 12 and all(r["redundancy"] >= 1.0 for r in prunable)
    assert {r["width"] for r in prunable} == {4, 8, 16}
    assert all(0 < r["macs_share"] < 1 and r["params"] > 0 for r in prunable)
    assert main(["analyze", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--out",
                 str(tmp_path), "--overwrite"]) == 0  # the first run's files are replaced only when asked
    out = capsys.readouterr().out
    assert "SRR redundancy" in out and "layer3.0.conv2 (+3)" in out


def prune_argv(out, cache, *extra):
    return ["prune", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--epochs", "1",
            "--max-steps-per-epoch", "3", "--finetune-epochs", "1", "--out", str(out), "--latency-runs", "2",
            "--cache-dir", str(cache), "--no-progress", "--batch-size", "64", *extra]


def test_prune_srr_writes_model_and_report(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(prune_argv(out, cache, "--method", "srr", "--criterion", "l1", "--target-macs", "0.5",
                           "--distill")) == 0
    printed = capsys.readouterr().out
    assert "before" in printed and "MACs" in printed and "time per phase" in printed
    report = json.loads((out / "report.json").read_text())
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert after["macs"] / before["macs"] <= 0.5 and report["summary"]["macs_kept"] <= 0.5
    for m in (before, after):
        assert 0 <= m["top1"] <= 1 and m["params"] > 0 and m["latency_ms"] > 0 and m["size_bytes"] > 0
    assert report["method"]["name"] == "srr" and report["method"]["policy"] == "srr" and report["method"]["distill"]
    assert {"base", "method", "method.finetune", "measure_after", "total"} <= set(report["timings"])
    assert {"before_after.png", "layer_widths.png"} <= set(report["plots"])
    assert (out / "report.md").is_file() and (out / "plan.json").is_file()
    model = pk.load(out / "model.safetensors")
    assert pk.count(model, torch.randn(1, 1, 8, 8)).macs == after["macs"]
    assert report["extra"]["base"]["cached"] is False
    # a second run reuses the cached base
    assert main(prune_argv(tmp_path / "run2", cache, "--method", "oneshot", "--policy", "global", "--ratio",
                           "0.3")) == 0
    again = json.loads((tmp_path / "run2" / "report.json").read_text())
    assert again["extra"]["base"]["cached"] is True
    assert again["metrics"]["before"]["top1"] == before["top1"]


def test_prune_from_a_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: coarse\ncriterion: taylor\ntarget-macs: 0.6\nevery: 2\nfinetune_epochs: 1\n")
    out = tmp_path / "run"
    assert main(prune_argv(out, tmp_path / "cache", "--recipe", str(recipe), "--target-macs", "0.7")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"]["name"] == "coarse" and report["method"]["criterion"] == "taylor"
    assert report["method"]["target"] == {"macs": 0.7}  # the command line wins over the recipe
    assert report["method"]["extra"] == {"every": 2}  # keys that are no flag go to the method
    assert report["summary"]["macs_kept"] <= 0.7
    assert report["extra"]["method_report"]["training_steps"] == 3


def test_prune_needs_a_target(tmp_path, capsys):
    assert main(prune_argv(tmp_path / "o", tmp_path / "c", "--method", "oneshot")) == 2
    assert "--target-macs" in capsys.readouterr().err


def test_prune_ignore_and_round_to_reach_the_tracer(tmp_path):
    out = tmp_path / "run"
    assert main(prune_argv(out, tmp_path / "cache", "--method", "oneshot", "--ratio", "0.3", "--ignore", "conv1",
                           "--round-to", "2")) == 0
    model = pk.load(out / "model.safetensors")
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs["conv1"].out_channels == 4  # width 0.25 of 16: the excluded stem (and what it is tied to) stays
    assert convs["layer1.0.conv2"].out_channels == 4
    changed = [m.out_channels for n, m in convs.items() if m.out_channels not in (4, 8, 16)]
    assert changed and all(c % 2 == 0 for c in changed)  # 30% of 8 or 16 channels, rounded to a multiple of 2
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["macs_kept"] < 0.9
