"""The prunekit command line, run in-process through main(argv)."""
from __future__ import annotations

import json

import pytest
import torch

from prunekit.cli import SUBCOMMANDS, build_parser, main
from prunekit.cli_cmds.common import load_model

from data.writers import write_fmnist  # tests/data: tiny files in the real formats


pytestmark = pytest.mark.usefixtures("single_thread")


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_every_subcommand_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)
    assert {"demo", "train", "info", "prune", "analyze", "bench", "export"} <= set(SUBCOMMANDS)


def test_info_registered_model(capsys):
    r = run_json(capsys, ["info", "lenet5", "--json", "--runs", "2", "--batches", "1", "4"])
    assert (r["params"], r["macs"]) == (61_706, 416_520)  # hand counts, see tests/measure
    assert r["input_shape"] == [1, 1, 28, 28] and r["model"]["name"] == "lenet5"
    assert r["size_bytes"] > 4 * 61_706
    assert sorted(r["latency"]) == ["1", "4"] and r["latency"]["4"]["batch"] == 4
    assert r["latency_ms"] == r["latency"]["1"]["median_ms"] > 0
    r = run_json(capsys, ["info", "resnet20", "--json", "--runs", "0", "--num-classes", "7"])
    assert r["macs"] == 40_813_184 - 64 * 3 and r["input_shape"] == [1, 3, 32, 32] and r["latency_ms"] is None


def test_info_table(capsys):
    assert main(["info", "lenet300", "--runs", "2", "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "266,610" in out and "MACs" in out and "latency, batch 1" in out


def test_unknown_names_list_valid_ones(capsys, tmp_path):
    assert main(["info", "resnet21"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet21'" in err and "resnet20, resnet32" in err and "torchvision:<name>" in err
    assert main(["train", "--model", "lenet5", "--dataset", "mnist-ish", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'mnist-ish'; valid: fashion-mnist, digits, cifar10, imagefolder" in err
    assert main(["train", "--model", "nope", "--dataset", "digits", "--out", str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_train_digits_then_info_on_the_run(capsys, tmp_path):
    out = tmp_path / "run"
    def argv(epochs: int) -> list[str]:
        return ["train", "--model", "lenet300", "--dataset", "digits", "--epochs", str(epochs), "--batch-size",
                "64", "--out", str(out), "--latency-runs", "2", "--no-progress"]

    assert main(argv(3)) == 0
    report = json.loads((out / "report.json").read_text())
    before = report["metrics"]["before"]
    assert before["top1"] > 0.85  # 10 classes: chance is 0.1
    assert before["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert report["data"] == {"dataset": "digits", "data_dir": None, "train": 1200, "val": 300, "test": 297,
                              "seed": 0, "augment": False}
    assert len(report["history"]) == 3 and report["model"]["name"] == "lenet300"
    assert (out / "report.md").is_file() and (out / "last.pt").is_file()
    assert json.loads((out / "model.json").read_text())["kwargs"]["input_size"] == 8
    capsys.readouterr()
    info = run_json(capsys, ["info", str(out), "--json", "--runs", "0"])
    assert info["params"] == before["params"] and info["input_shape"] == [1, 1, 8, 8]
    model = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == before["params"]
    assert torch.equal(model.fc1.weight, torch.load(out / "last.pt", weights_only=True)["model"]["fc1.weight"])
    # a second run into the same folder neither overwrites silently nor fails obscurely
    assert main(argv(3)) == 2
    assert "already exist" in capsys.readouterr().err
    assert main(argv(4) + ["--resume"]) == 0
    assert len(json.loads((out / "report.json").read_text())["history"]) == 4


def test_train_fashion_mnist_from_data_dir(tmp_path):
    write_fmnist(tmp_path, learnable=True)
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                 "--epochs", "1", "--val-size", "10", "--batch-size", "8", "--out", str(out),
                 "--latency-runs", "0", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["data"]["train"], report["data"]["val"], report["data"]["test"]) == (30, 10, 20)
    assert report["model"] == {"name": "lenet5", "num_classes": 10, "in_channels": 1, "width": 1.0,
                               "input_size": 28}
    assert report["metrics"]["before"]["macs"] == 416_520
    assert 0.0 <= report["metrics"]["before"]["top1"] <= 1.0


def test_info_uses_the_input_shape_a_run_was_trained_on(capsys, tmp_path):
    """A CIFAR-style model trained on 28x28 Fashion-MNIST is measured at 1x28x28, not its default 3x32x32."""
    write_fmnist(tmp_path, learnable=True)
    out = tmp_path / "r20"
    assert main(["train", "--model", "resnet20", "--width", "0.25", "--dataset", "fashion-mnist", "--data-dir",
                 str(tmp_path), "--epochs", "1", "--val-size", "0", "--batch-size", "20", "--out", str(out),
                 "--latency-runs", "0", "--no-progress"]) == 0
    capsys.readouterr()
    info = run_json(capsys, ["info", str(out / "last.pt"), "--json", "--runs", "0"])
    assert info["input_shape"] == [1, 1, 28, 28]
    assert info["macs"] == json.loads((out / "report.json").read_text())["metrics"]["before"]["macs"]
    assert json.loads((out / "model.json").read_text())["input_shape"] == [1, 28, 28]


def test_missing_fashion_mnist_is_a_clear_error(capsys, tmp_path, monkeypatch):
    from prunekit.data import fashion_mnist
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [tmp_path / "none"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    assert main(["train", "--model", "lenet5", "--data-dir", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST not found" in err and str(tmp_path / "empty") in err and str(tmp_path / "none") in err


@pytest.mark.parametrize("argv", [[], ["--debug"]])
def test_no_command_prints_help(capsys, argv):
    assert main(argv) == 2
    assert "train" in capsys.readouterr().out
