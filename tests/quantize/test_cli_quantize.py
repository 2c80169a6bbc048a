"""`prunekit quantize` and `prunekit prune ... --quantize int8`: the int8 ONNX file and the int8 row of the
report (top-1, bytes, latency)."""
import json
import sys
from pathlib import Path

import pytest
import torch

import prunekit as pk
from prunekit.cli import main
from prunekit.models import create

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.writers import write_fmnist  # noqa: E402  (tests/data: tiny files in the real formats)

pytestmark = pytest.mark.usefixtures("single_thread")


def _saved_lenet(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    pk.save(create("lenet5", num_classes=10, in_channels=1), tmp_path / "m.safetensors",
            extra={"input_shape": [1, 28, 28]})
    return tmp_path / "m.safetensors"


def test_quantize_command_writes_int8_and_report(tmp_path, capsys):
    write_fmnist(tmp_path / "fm", 64, 32, learnable=True)
    model = _saved_lenet(tmp_path)
    argv = ["quantize", str(model), "--out", str(tmp_path / "q"), "--calib-batches", "2", "--dataset",
            "fashion-mnist", "--data-dir", str(tmp_path / "fm"), "--batch-size", "16", "--val-size", "0",
            "--latency-runs", "2"]
    assert main(argv) == 0
    assert "size float -> int8" in capsys.readouterr().out
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    int8 = report["metrics"]["int8"]
    assert int8["method"] == "static" and int8["backend"] == "onnxruntime" and int8["calib_batches"] == 2
    assert int8["size_bytes"] == (tmp_path / "q" / "model.int8.onnx").stat().st_size
    assert 0.0 <= int8["top1"] <= 1.0 and set(int8["latency_by_runtime"]["onnxruntime"]) == {"1", "64"}
    assert set(report["metrics"]["before"]["latency_by_runtime"]) == {"torch", "onnxruntime"}
    md = (tmp_path / "q" / "report.md").read_text()
    assert "## int8" in md and "| int8 (onnxruntime, static) |" in md
    assert main(argv) == 2                                                     # no silent overwrite
    assert "holds an earlier run" in capsys.readouterr().err


def test_quantize_command_errors(tmp_path, capsys):
    write_fmnist(tmp_path / "fm", 32, 16, learnable=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    base = ["--out", str(tmp_path / "q"), "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "fm"),
            "--val-size", "0"]
    assert main(["quantize", str(bad), *base]) == 2
    assert "bad.safetensors is not a readable safetensors file: corrupt or truncated" in capsys.readouterr().err
    model = _saved_lenet(tmp_path)
    assert main(["quantize", str(model), *base, "--input-shape", "3,28,28"]) == 2
    assert "the model does not run on the example inputs: RuntimeError" in capsys.readouterr().err
    assert main(["quantize", str(model), *base, "--backend", "torchao", "--method", "static"]) == 2
    assert "backend 'torchao' does not do method 'static'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", str(model), *base, "--calib-batches", "0"])


def test_prune_with_quantize_int8(tmp_path):
    out = tmp_path / "run"
    argv = ["prune", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--epochs", "1",
            "--max-steps-per-epoch", "3", "--finetune-epochs", "1", "--out", str(out), "--latency-runs", "2",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--batch-size", "64", "--ratio", "0.5",
            "--quantize", "int8", "--calib-batches", "2"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    int8 = report["metrics"]["int8"]
    assert int8["size_bytes"] == (out / "model.int8.onnx").stat().st_size and int8["calib_batches"] == 2
    assert int8["top1"] is not None and "onnxruntime" in report["metrics"]["after"]["latency_by_runtime"]
    assert report["config"]["quantize"]["scheme"] == "int8"
    assert "## int8" in (out / "report.md").read_text()
    assert pk.load(out / "model.safetensors") is not None                    # the float model is saved as before
    assert main(["export", str(out), "--out", str(tmp_path / "run.onnx"), "--batches", "1", "--runs", "2"]) == 0


def test_quantize_command_torchao_backend(tmp_path):
    write_fmnist(tmp_path / "fm", 32, 16, learnable=True)
    model = _saved_lenet(tmp_path)
    argv = ["quantize", str(model), "--out", str(tmp_path / "q"), "--backend", "torchao", "--dataset",
            "fashion-mnist", "--data-dir", str(tmp_path / "fm"), "--batch-size", "16", "--val-size", "0",
            "--latency-runs", "1"]
    assert main(argv) == 0
    int8 = json.loads((tmp_path / "q" / "report.json").read_text())["metrics"]["int8"]
    assert int8["backend"] == "torchao" and int8["method"] == "dynamic"
    assert int8["latency_by_runtime"]["onnxruntime"] is None and set(int8["latency_by_runtime"]["torch"]) == {"1", "64"}
    assert not (tmp_path / "q" / "model.int8.onnx").exists()          # torchao int8 stays in memory


def test_a_failed_quantize_leaves_nothing_and_a_resized_model_gets_resized_data(tmp_path, capsys):
    """A run failing after its first file (an input shape the data cannot give) used to leave model.fp32.onnx,
    and the retry was refused as "an earlier run"; a model trained at --input-size 16 on 8x8 digits could not be
    quantized with those digits at all."""
    model = tmp_path / "m16.safetensors"
    torch.manual_seed(0)
    pk.save(create("lenet5", num_classes=10, in_channels=1, input_size=16), model, extra={"input_shape": [1, 16, 16]})
    out = tmp_path / "q"
    base = ["quantize", str(model), "--out", str(out), "--dataset", "digits", "--calib-batches", "2",
            "--latency-runs", "0"]
    assert main([*base, "--input-shape", "1,12,12"]) == 2  # fails after the float export
    assert "Traceback" not in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    assert main([*base[:3], str(tmp_path / "keep"), *base[4:], "--input-shape", "1,12,12"]) == 2
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["notes.txt"]  # the user's file stays
    capsys.readouterr()
    assert main(base) == 0  # the retry runs: the 8x8 digits are resized to the model's 16 px
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["image_size"] == 16 and report["metrics"]["int8"]["calib_batches"] == 2
