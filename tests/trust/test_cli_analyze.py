"""`prunekit analyze` (second audit): every option is read or refused by name, and analysis.json records what
the rows were computed from (model, checkpoint and its sha256, input, gamma / quantile)."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

import prunekit as pk
from prunekit.cli import main
from prunekit.models import create

pytestmark = pytest.mark.usefixtures("single_thread")
REFUSED = "(an option this analysis would not read is refused, not ignored)"


def _saved(path, input_shape=None):
    torch.manual_seed(0)
    extra = {"input_shape": input_shape} if input_shape else None
    return pk.save(create("resnet20", num_classes=10, in_channels=1, width=0.25), path, extra=extra)


def _analysis(out):
    return json.loads((out / "analysis.json").read_text())


def test_options_a_checkpoint_makes_unread_are_refused_by_name(tmp_path, capsys):
    """--width / --num-classes never apply to a built checkpoint; --dataset / --input-size / --in-channels not
    to one that records its input; --quantile not with --gamma; --data-dir only for imagefolder."""
    ckpt = _saved(tmp_path / "m.safetensors", [1, 16, 16])
    out = tmp_path / "an"
    cases = [
        (["--checkpoint", str(ckpt), "--width", "0.5"],
         f"--width sizes a model built from --model; --checkpoint {ckpt} is built already {REFUSED}"),
        (["--checkpoint", str(ckpt), "--width", "1.0", "--num-classes", "10"],  # given at the default: refused too
         f"--width, --num-classes size a model built from --model; --checkpoint {ckpt} is built already"),
        (["--checkpoint", str(ckpt), "--dataset", "digits", "--input-size", "16"],
         f"--dataset, --input-size set the input shape; --checkpoint {ckpt} records the one it was trained on, "
         "(1, 16, 16)"),
        (["--checkpoint", str(ckpt), "--gamma", "0.3", "--quantile", "0.05"],
         "--quantile sets gamma as a quantile of the distances; --gamma gives gamma itself"),
        (["--model", "resnet20", "--dataset", "digits", "--data-dir", str(tmp_path)],
         "--data-dir is read only for --dataset imagefolder; the shapes of digits are fixed"),
    ]
    for argv, message in cases:
        assert main(["analyze", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("prunekit analyze: error: ") and message in err and err.count("\n") == 1, err
        assert not out.exists()  # refused before anything is written


def test_analysis_json_records_model_checkpoint_input_and_threshold(tmp_path, capsys):
    """analysis.json: {"model", "checkpoint" (path, file, bytes, sha256), "dataset", "input_from",
    "input_shape", "example_seed", "gamma", "quantile", "groups"}; what was not read is None."""
    ckpt = _saved(tmp_path / "m.safetensors", [1, 16, 16])
    assert main(["analyze", "--checkpoint", str(ckpt), "--gamma", "0.3", "--out", str(tmp_path / "a")]) == 0
    got = _analysis(tmp_path / "a")
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert got["checkpoint"] == {"path": str(ckpt), "file": str(ckpt), "bytes": ckpt.stat().st_size, "sha256": sha}
    assert {k: got[k] for k in ("model", "dataset", "input_from", "input_shape", "example_seed", "gamma",
                                "quantile")} == {"model": "resnet20", "dataset": None, "input_from": "checkpoint",
                                                 "input_shape": [1, 16, 16], "example_seed": 0, "gamma": 0.3,
                                                 "quantile": None}
    assert (len(got["groups"]), got["groups"][0]["group"], got["groups"][0]["width"]) == (13, "conv1 (+3)", 4)

    # a checkpoint without a recorded input: --dataset and --input-size are read, and recorded
    bare = _saved(tmp_path / "bare.safetensors")
    assert main(["analyze", "--checkpoint", str(bare), "--dataset", "digits", "--input-size", "12",
                 "--quantile", "0.1", "--out", str(tmp_path / "b")]) == 0
    got = _analysis(tmp_path / "b")
    assert (got["model"], got["dataset"], got["input_from"], got["input_shape"], got["gamma"], got["quantile"]) == (
        "resnet20", "digits", "--input-size", [1, 12, 12], None, 0.1)

    # from --model: the width it was built at, no checkpoint
    assert main(["analyze", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--out",
                 str(tmp_path / "c")]) == 0
    got = _analysis(tmp_path / "c")
    assert (got["model"], got["checkpoint"], got["width"], got["dataset"], got["input_shape"], got["quantile"]) == (
        "resnet20", None, 0.25, "digits", [1, 8, 8], 0.05)
    assert "width" not in _analysis(tmp_path / "a")  # a checkpoint's width is its own; --width was not read
    capsys.readouterr()
