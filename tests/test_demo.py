"""`prunekit demo` end to end on a tiny Fashion-MNIST written by the test (and on the digits fallback)."""
from __future__ import annotations

import json

import pytest

from prunekit.cli import main

from data.writers import write_fmnist  # tests/data: tiny files in the real formats

pytestmark = pytest.mark.usefixtures("single_thread")


def demo_argv(tmp_path, data_dir) -> list[str]:
    return ["demo", "--data-dir", str(data_dir), "--out", str(tmp_path / "demo"), "--train-samples", "300",
            "--val-samples", "50", "--epochs", "2", "--finetune-epochs", "1", "--width", "0.25",
            "--latency-runs", "2", "--cache-dir", str(tmp_path / "cache"), "--batch-size", "50"]


def test_demo_tells_the_whole_story(tmp_path, capsys):
    data = tmp_path / "fmnist"
    data.mkdir()
    write_fmnist(data, n_train=400, n_test=100, learnable=True)
    assert main(demo_argv(tmp_path, data)) == 0
    out = capsys.readouterr().out
    for text in ("SRR redundancy", "before", "after", "MACs kept", "report:"):
        assert text in out
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["data"]["dataset"] == "fashion-mnist" and report["data"]["train"] == 300
    assert report["method"]["name"] == "srr" and report["method"]["distill"] is True
    assert report["summary"]["macs_kept"] <= 0.55
    assert report["metrics"]["before"]["top1"] > 0.3  # 10 classes: chance is 0.1
    assert {"analyze.png", "before_after.png", "layer_widths.png"} <= set(p.name for p in (tmp_path / "demo").iterdir())
    assert (tmp_path / "demo" / "model.safetensors").is_file()
    assert any((tmp_path / "cache").iterdir())  # the base is cached for the next run


def test_demo_falls_back_to_digits(tmp_path, capsys, monkeypatch):
    from prunekit.data import fashion_mnist
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [tmp_path / "none"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    argv = demo_argv(tmp_path, tmp_path / "empty")
    argv[argv.index("--epochs") + 1] = "1"
    del argv[argv.index("--data-dir"):argv.index("--data-dir") + 2]  # an explicit --data-dir never falls back
    assert main(argv) == 0
    assert "Falling back to the digits" in capsys.readouterr().err
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["data"]["dataset"] == "digits" and report["summary"]["macs_kept"] <= 0.55
