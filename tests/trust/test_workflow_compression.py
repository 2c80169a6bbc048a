"""Deep Compression through run_workflow (PruneConfig(method="deep_compression")): the compressed file in the run
folder, settings it would not read refused before any work, prune.ignore honoured, seeded runs identical."""
from __future__ import annotations

import json

import pytest
import torch

import prunekit as pk
from prunekit.cli import main
from prunekit.workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, QuantizeConfig, RecoverConfig,
                               WorkflowConfig, load_model, run_workflow, workflow_methods)

pytestmark = pytest.mark.usefixtures("single_thread")


def _cfg(tmp_path=None, name="dc", **prune):
    per_layer = "sparsity" in prune.get("options", {}) and "ratio" not in prune
    prune = {"method": "deep_compression", "ratio": None if per_layer else 0.8,
             "options": {"bits": 4, "finetune_epochs": 1}, **prune}
    return WorkflowConfig(model=ModelConfig("lenet300"), data=DataConfig("digits"),
                          base=BaseConfig(epochs=2, use_cache=False), prune=PruneConfig(**prune),
                          recover=RecoverConfig(finetune_epochs=1), latency_runs=0, progress=False,
                          out=None if tmp_path is None else str(tmp_path / name))


def test_run_writes_the_compressed_file_and_reports_its_stages(tmp_path):
    res = run_workflow(_cfg(tmp_path))
    out = tmp_path / "dc"
    assert sorted(p.name for p in out.iterdir()) == ["before_after.png", "compression_stages.png",
                                                    "finetune_curve.png", "model.pkz", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    stages = report["extra"]["deep_compression"]["stages"]
    assert [s["stage"] for s in stages] == ["dense", "pruned", "quantized", "huffman"]
    assert (out / "model.pkz").stat().st_size == stages[-1]["bytes"] == report["metrics"]["after"]["size_bytes"]
    assert report["extra"]["deep_compression"]["exact_reload"] is True
    assert report["extra"]["saved"] == str(out / "model.pkz")
    # 80% of every conv/linear weight removed; nothing removed structurally
    assert res.after["params"] == res.before["params"] and res.after["macs"] == res.before["macs"]
    layers = report["extra"]["deep_compression"]["layers"]
    assert all(layer["nonzero"] / layer["numel"] == pytest.approx(0.2, abs=0.01) for layer in layers)
    assert res.plan.decisions == [] and res.method.exact
    # the run folder loads (folder or file), and the file reproduces the result's model
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(pk.load(out / "model.pkz")(x), res.model.eval()(x))
    assert torch.equal(load_model(out)(x), res.model(x))  # a run folder: what export / quantize / analyze read
    assert "## Deep Compression stages" in (out / "report.md").read_text()
    assert report["summary"]["size_kept"] < 0.1
    # retraining epochs once, as the run's history; the centroid fine-tuning epochs in the method's block
    assert [h["epoch"] for h in report["history"]] == [1]
    assert list(report["extra"]["deep_compression"]["history"]) == ["finetune"]
    assert len(report["extra"]["deep_compression"]["history"]["finetune"]) == 1


def test_same_seed_same_bytes_and_accuracies():
    a, b = run_workflow(_cfg()), run_workflow(_cfg())
    assert a.report["extra"]["deep_compression"]["stages"] == b.report["extra"]["deep_compression"]["stages"]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_per_layer_sparsity_and_ignore():
    res = run_workflow(_cfg(options={"sparsity": {"fc1": 0.9, "fc2": 0.5}, "bits": 5, "finetune_epochs": 0},
                            ignore=["fc3"]))
    kept = {layer["key"]: layer["nonzero"] / layer["numel"]
            for layer in res.report["extra"]["deep_compression"]["layers"]}
    assert kept == pytest.approx({"fc1.weight": 0.1, "fc2.weight": 0.5}, abs=0.01)  # fc3 left out entirely
    assert int((res.model.fc3.weight == 0).sum()) == 0


@pytest.mark.parametrize("change, message", [
    ({"target": {"macs": 0.5}, "ratio": None}, r"prune.target=\{'macs': 0.5\} belong to channel pruning"),
    ({"policy": "global"}, "prune.policy='global'"),
    ({"round_to": 8}, "prune.round_to=8"),
    ({"options": {"retrain_epochs": 3}}, "'retrain_epochs' is set by the run from recover.finetune_epochs"),
    ({"options": {"path": "x.pkz"}}, r"'path' is set by the run from out"),
    ({"options": {"sparsity": 0.5}, "ratio": 0.8}, "name the same thing"),
    ({"options": {"bitz": 4}}, "bitz"),
    ({"options": {"bits": 40}}, r"bits=40 must be an int in \[1, 16\]"),
    ({"criterion": "l1"}, "l1"),
])
def test_settings_it_would_not_read_are_refused_before_work(tmp_path, change, message):
    with pytest.raises((ValueError, TypeError, KeyError), match=message):
        run_workflow(_cfg(tmp_path, **change))
    assert not (tmp_path / "dc").exists()  # refused before the base was trained or the folder made


def test_recovery_and_quantize_settings_are_refused(tmp_path):
    for recover, quantize, message in ((RecoverConfig(distill=True), None, "recover.distill=True"),
                                       (RecoverConfig(), QuantizeConfig("int8"), "quantize='int8'")):
        cfg = _cfg(tmp_path)
        cfg.recover, cfg.quantize = recover, quantize
        with pytest.raises(ValueError, match=message):
            run_workflow(cfg)


def test_ignore_naming_no_layer_is_refused():
    with pytest.raises(ValueError, match=r"\['fc9'\] name no conv or linear layer"):
        run_workflow(_cfg(ignore=["fc9"]))


def test_cli_prune_runs_deep_compression(tmp_path, capsys):
    assert "deep_compression" in workflow_methods()
    out = tmp_path / "cli"
    assert main(["prune", "--model", "lenet300", "--dataset", "digits", "--epochs", "1", "--method",
                 "deep_compression", "--ratio", "0.9", "--method-arg", "bits=3", "--method-arg",
                 "finetune_epochs=1", "--finetune-epochs", "1", "--latency-runs", "0", "--no-progress",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nonzero params" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["prune"]["method"] == "deep_compression"
    assert max(layer["clusters"] for layer in report["extra"]["deep_compression"]["layers"]) <= 8  # 3 bits
