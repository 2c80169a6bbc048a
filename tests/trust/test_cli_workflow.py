"""The library workflow: one validated, JSON round-trippable config in, one result out; recorded in
report.json; the CLI package is imported by nothing outside it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import prunekit
from prunekit.cli import main
from prunekit.workflow import (BaseConfig, DataConfig, ModelConfig, PruneConfig, QuantizeConfig, RecoverConfig,
                               WorkflowConfig, register_quantizer, run_workflow)
from prunekit.workflow.config import QUANTIZERS

from .cli_helpers import trained_run

pytestmark = pytest.mark.usefixtures("single_thread")


def small(**over) -> WorkflowConfig:
    """A width-0.25 ResNet-20 on digits: 3 base steps and 3 fine-tuning steps, no timing."""
    kw = dict(model=ModelConfig("resnet20", width=0.25), data=DataConfig("digits", batch_size=64),
              base=BaseConfig(epochs=1, use_cache=False), prune=PruneConfig(method="oneshot", ratio=0.3),
              recover=RecoverConfig(finetune_epochs=1), max_steps_per_epoch=3, latency_runs=0, progress=False)
    return WorkflowConfig(**{**kw, **over})


def test_config_round_trips_through_json():
    cfg = small(prune=PruneConfig(method="coarse", target={"macs": 0.6}, ignore="conv1", options={"every": 2}),
                quantize=QuantizeConfig("int8", calib_batches=2), out="runs/x", seed=5)
    assert cfg.prune.ignore == ["conv1"]  # one name, never its characters
    back = WorkflowConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.prune, PruneConfig) and isinstance(back.quantize, QuantizeConfig)
    assert json.loads(cfg.to_json())["prune"]["target"] == {"macs": 0.6}


def test_paths_given_as_path_objects_are_recorded_as_text_and_round_trip(tmp_path):
    """BaseConfig(cache_dir=Path(...)) was recorded as "PosixPath('...')" and came back unequal."""
    cfg = small(data=DataConfig("digits", data_dir=tmp_path / "d"), base=BaseConfig(cache_dir=tmp_path / "c"),
                out=tmp_path / "o")
    data = json.loads(cfg.to_json())
    assert (data["data"]["data_dir"], data["base"]["cache_dir"], data["out"]) == tuple(
        str(tmp_path / n) for n in "dco")
    assert WorkflowConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("data,error,text", [
    ({"modle": {}}, TypeError, "WorkflowConfig: unknown key(s) 'modle'; valid: model, data, base"),
    ({"model": {"name": "lenet5", "widht": 2}}, TypeError, "ModelConfig: unknown key(s) 'widht'; valid: name"),
    ({"model": {"name": "lenet5"}, "prune": {"target": {"flops": 0.5}}}, TypeError, "unknown target key(s) ['flops']"),
    ({"model": {"name": "lenet5"}, "prune": {"ratio": 1.5}}, ValueError, "ratio must be a fraction in [0, 1)"),
    ({"model": {"name": "lenet5"}, "prune": {"ratio": 0.3, "target": {"macs": 0.5}}}, ValueError,
     "give either a target or a ratio, not both"),
    ({"model": {"name": "lenet5"}, "prune": {"ratio": 0.3, "max_ratio": 2}}, ValueError,
     "max_ratio must be a fraction in (0, 1)"),
    ({"model": {"name": "lenet5", "num_classes": 0}, "prune": {"ratio": 0.3}}, ValueError,
     "num_classes must be an integer >= 2 or None"),
    ({"model": {"name": "lenet5"}, "prune": {"ratio": 0.3}, "data": {"dataset": "mnist-ish"}}, ValueError,
     "unknown dataset 'mnist-ish'"),
    ({"model": {"name": "lenet5"}}, ValueError, "give prune=PruneConfig(target=...) or PruneConfig(ratio=...) (--target-macs"),
    ({"prune": {"ratio": 0.3}}, ValueError, "give model.name (--model) or base.path (--base)"),
    ({"model": {"name": "lenet5"}, "prune": {"ratio": 0.3}, "device": "nonsense"}, ValueError,
     "device must be a torch device string"),
    ({"base": {"path": "m.safetensors", "max_steps_per_epoch": 3}, "prune": {"ratio": 0.3}}, ValueError,
     "a base loaded from m.safetensors is not trained"),
    ({"model": {"name": "lenet5"}, "base": {"max_steps_per_epoch": 0}, "prune": {"ratio": 0.3}}, ValueError,
     "BaseConfig: max_steps_per_epoch must be an integer >= 1 or None"),
])
def test_config_rejects_unknown_keys_and_bad_values(data, error, text):
    with pytest.raises(error) as e:
        WorkflowConfig.from_dict(data)
    assert text in str(e.value)


def test_run_workflow_returns_one_result_and_records_its_config(tmp_path):
    cfg = small(out=str(tmp_path / "run"))
    res = run_workflow(cfg, log=lambda line: None)
    assert res.out == tmp_path / "run" and res.plan.decisions
    assert res.after["macs"] < res.before["macs"] and res.after["params"] < res.before["params"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert res.report == report  # the result carries what was written
    assert WorkflowConfig.from_dict(report["config"]) == cfg
    assert report["summary"]["macs_kept"] == pytest.approx(res.after["macs"] / res.before["macs"])
    assert report["data_read"]["files"][0]["name"] == "digits.csv.gz"
    assert len(report["data_read"]["files"][0]["sha256"]) == 64
    assert sum(p.numel() for p in res.model.parameters()) == res.after["params"]
    assert {"model.safetensors", "plan.json", "report.json", "report.md"} <= {p.name for p in res.out.iterdir()}
    loaded = prunekit.load(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), res.model.state_dict().values()))


def test_no_out_writes_nothing_and_quantizers_plug_in(tmp_path, monkeypatch):
    seen = {}

    def halve(model, example, loader, qcfg, **context):  # context: out folder, test loader, ...
        seen["batches"], seen["out"] = qcfg.calib_batches, context.get("out")
        return model, {"scheme": qcfg.scheme, "calibrated_on": len(loader.dataset)}

    monkeypatch.setattr(QUANTIZERS, "_entries", dict(QUANTIZERS._entries))  # the test's scheme goes afterwards
    register_quantizer("test-halve", halve)
    with pytest.raises(ValueError, match="already registered"):
        register_quantizer("Test_Halve", halve)
    cache = tmp_path / "cache"
    res = run_workflow(small(quantize=QuantizeConfig("test-halve", calib_batches=2),
                             base=BaseConfig(epochs=1, cache_dir=str(cache))), log=lambda line: None)
    assert res.out is None and seen == {"batches": 2, "out": None}
    assert res.report["extra"]["quantize"] == {"scheme": "test-halve", "calibrated_on": 1200}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # only the cached base


def test_base_steps_cap_is_its_own_when_given():
    """BaseConfig.max_steps_per_epoch caps the base's training alone; None leaves the run's cap on every phase."""
    res = run_workflow(small(base=BaseConfig(epochs=1, use_cache=False, max_steps_per_epoch=5)), log=lambda m: None)
    assert res.report["extra"]["base"]["max_steps"] == 5
    assert run_workflow(small(), log=lambda m: None).report["extra"]["base"]["max_steps"] == 3


def test_unknown_method_or_scheme_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'pruneit'; choose one of: .*oneshot"):
        run_workflow(small(prune=PruneConfig(method="pruneit", ratio=0.3), out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="unknown quantization scheme 'int3'"):
        run_workflow(small(quantize=QuantizeConfig("int3"), out=str(tmp_path / "b")))
    with pytest.raises(TypeError, match="unexpected keyword argument.*'bogus'"):
        run_workflow(small(prune=PruneConfig(method="oneshot", ratio=0.3, options={"bogus": 1}),
                           out=str(tmp_path / "c")))
    assert list(tmp_path.iterdir()) == []


def test_base_of_another_architecture_is_refused(capsys, tmp_path):
    data, run = trained_run(tmp_path)
    argv = ["prune", "--base", str(run), "--dataset", "fashion-mnist", "--data-dir", str(data), "--ratio", "0.3",
            "--val-size", "10", "--batch-size", "8",
            "--finetune-epochs", "1", "--max-steps-per-epoch", "2", "--latency-runs", "0", "--no-progress"]
    assert main([*argv, "--model", "resnet20", "--out", str(tmp_path / "p1")]) == 2
    err = capsys.readouterr().err
    assert f"base.path (--base) {run} holds a lenet5" in err and "not the model.name (--model) resnet20" in err
    assert not (tmp_path / "p1" / "report.json").exists()
    assert main([*argv, "--width", "0.5", "--out", str(tmp_path / "p1")]) == 2
    assert (f"base.path (--base) {run} is built already: model.width (--width) 0.5 (the base has 1.0)"
            in capsys.readouterr().err)
    assert main(["analyze", "--checkpoint", str(run), "--model", "vgg11", "--out", str(tmp_path / "a")]) == 2
    assert f"--checkpoint {run} holds a lenet5, not the --model vgg11" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "p2")]) == 0  # without --model: the base's own name
    report = json.loads((tmp_path / "p2" / "report.json").read_text())
    assert report["model"]["name"] == "lenet5" and report["config"]["base"]["path"] == str(run)


def test_nothing_outside_the_cli_imports_it():
    root = Path(prunekit.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in ("cli.py", "cli_cmds"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if "cli_cmds" in n or n in ("prunekit.cli", "..cli", ".cli") or n.startswith("prunekit.cli."):
                    offenders.append(f"{rel}: {n}")
    assert offenders == []
