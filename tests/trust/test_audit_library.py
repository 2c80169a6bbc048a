"""Regression tests for the library findings of the new-user trust audit (docs/trust-audit.md).

Each test names the audit case it holds (L..): the error a user gets and that nothing changed on the way.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

import prunekit as pk
from prunekit.graph.trace import declares_heads
from prunekit.methods import Recovery
from prunekit.models import create
from prunekit.planning import PlanConfig
from prunekit.train import TrainConfig, Trainer
from prunekit.workflow import BaseConfig, PruneConfig, RecoverConfig, WorkflowConfig

from .cli_helpers import snapshot


def _lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("lenet5", num_classes=10, in_channels=1).eval()


X = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_to_a_folder_names_the_folder_and_leaves_it(tmp_path, overwrite):
    """L33/L45: pk.save(model, <folder>) said 'exists; pass overwrite=True', and with overwrite=True raised a
    raw rename error naming a temporary file."""
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(IsADirectoryError) as e:
        pk.save(_lenet(), folder, overwrite=overwrite)
    assert str(e.value) == f"{folder} is a folder; give the path of the file to write inside it"
    assert snapshot(folder) == {"keep.txt": b"mine"}


def test_load_a_folder_says_folder(tmp_path):
    """L47: pk.load(<folder>) said 'no such model file' for a folder that exists."""
    with pytest.raises(IsADirectoryError, match="is a folder, not a model file; pass the model file inside it"):
        pk.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        pk.load(tmp_path / "missing.safetensors")


def test_load_a_checkpoint_or_json_names_the_kind_of_file(tmp_path):
    """L48/C06: a training checkpoint or a JSON file given to pk.load was reported as a corrupt safetensors."""
    from prunekit.train.checkpoint import atomic_torch_save
    ckpt = atomic_torch_save({"model": _lenet().state_dict()}, tmp_path / "last.pt")
    with pytest.raises(pk.ModelFileError) as e:
        pk.load(ckpt)
    assert str(e.value).startswith(f"{ckpt} is a torch checkpoint (zip archive), not a prunekit model file")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": {"name": "lenet5"}}))
    with pytest.raises(pk.ModelFileError) as e:
        pk.load(report)
    assert str(e.value).startswith(f"{report} holds JSON text, not a model file")
    # a real model file still loads, and a truncated one is still "corrupt or truncated"
    good = pk.save(_lenet(), tmp_path / "m.safetensors")
    assert torch.equal(pk.load(good)(X), _lenet()(X))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(pk.ModelFileError, match="corrupt or truncated"):
        pk.load(cut)


def test_verify_takes_every_plan_form_apply_takes(tmp_path):
    """L58: pk.apply took a plan dict, JSON text or a path, pk.verify raised AttributeError on them."""
    model = _lenet()
    plan = pk.plan(model, X, ratio=0.5)
    pruned = pk.apply(copy.deepcopy(model), plan)
    path = plan.save(tmp_path / "plan.json")
    want = pk.verify(model, pruned, plan, X)
    assert want.exact
    for form in (plan.to_dict(), plan.to_json(), str(path), path):
        got = pk.verify(model, pruned, form, X)
        assert (got.exact, got.max_abs_diff, got.params_before, got.params_after) == \
            (want.exact, want.max_abs_diff, 61706, 15738)
    with pytest.raises(TypeError, match="plan must be a PruningPlan, a plan dict, JSON text or a plan file path"):
        pk.verify(model, pruned, 3, X)


def test_apply_refuses_an_optimizer_that_is_not_one():
    """L30: pk.apply(..., optimizer="sgd") failed with "'str' object has no attribute 'param_groups'" after
    part of the model was already cut."""
    model = _lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = pk.plan(model, X, ratio=0.5)
    with pytest.raises(TypeError) as e:
        pk.apply(model, plan, optimizer="sgd")
    assert str(e.value) == "optimizer must be a torch.optim.Optimizer (its state is sliced along), got str"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trainer_without_a_loader_says_so():
    """L42: oneshot(model, None, ...) with fine-tuning said 'the train loader has no len()'."""
    from prunekit.methods import oneshot
    message = ("the Trainer needs a train loader (an iterable of (inputs, targets) batches), got None; pass one, or "
               "no fine-tuning epochs")
    with pytest.raises(TypeError) as e:
        Trainer(_lenet(), None, None, TrainConfig(epochs=1))
    assert str(e.value) == message
    with pytest.raises(TypeError) as e:
        oneshot(_lenet(), None, None, X, ratio=0.5, finetune_epochs=1)
    assert str(e.value) == message
    assert oneshot(_lenet(), None, None, X, ratio=0.5, finetune_epochs=0).model.conv1.out_channels == 3


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    """P23: two identical seeded runs wrote model files with equal tensors and description but different bytes
    (safetensors emitted its metadata in a per-process hash order), so `sha256sum` told them apart."""
    import hashlib
    model = _lenet()
    digests = {hashlib.sha256(pk.save(model, tmp_path / f"m{i}.safetensors").read_bytes()).hexdigest()
               for i in range(6)}
    assert len(digests) == 1
    header = (tmp_path / "m0.safetensors").read_bytes()[8:40]
    assert header.startswith(b'{"__metadata__":{"prunekit":')
    assert torch.equal(pk.load(tmp_path / "m5.safetensors")(X), model(X))


def test_folders_and_tolerances_named(tmp_path):
    """L80/L82/L84: PruningPlan.load and pk.export of a folder got 'no such plan file' / 'exists; pass
    overwrite=True'; pk.verify(rtol=-1) reported "approximate (numerical difference with no known cause)"."""
    model = _lenet()
    plan = pk.plan(model, X, ratio=0.5)
    with pytest.raises(IsADirectoryError, match="is a folder, not a plan file"):
        pk.PruningPlan.load(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(IsADirectoryError, match="is a folder; give the .onnx file to write"):
            pk.export(model, X[:1], tmp_path, overwrite=overwrite)
    pruned = pk.apply(copy.deepcopy(model), plan)
    for rtol in (-1, float("nan"), "1e-4"):
        with pytest.raises(ValueError, match="rtol must be a number >= 0"):
            pk.verify(model, pruned, plan, X, rtol=rtol)
    assert pk.verify(model, pruned, plan, X, rtol=0.01).exact


def test_save_refuses_an_arch_that_would_not_load(tmp_path):
    """L89: pk.save(model, f, arch="lenet5") for a 1-channel LeNet wrote a file that pk.load then refused
    (the bare name builds the 3-channel default)."""
    model = _lenet()
    with pytest.raises(ValueError) as e:
        pk.save(model, tmp_path / "m.safetensors", arch="lenet5")
    assert str(e.value) == ("arch={'name': 'lenet5', 'kwargs': {}} builds conv1.weight with shape [6, 3, 5, 5], the "
                            "model has [6, 1, 5, 5]: the file could not be loaded; pass the arguments the model was "
                            "built with")
    assert not (tmp_path / "m.safetensors").exists()
    good = pk.save(model, tmp_path / "m.safetensors", arch={"name": "lenet5", "kwargs": {"in_channels": 1}})
    assert torch.equal(pk.load(good)(X), model(X))


@pytest.mark.parametrize("build, error, message", [
    (lambda: PruneConfig(method="bogus", ratio=0.3), ValueError,
     "PruneConfig: unknown method 'bogus'; choose one of: admm, coarse, deep_compression,"),
    (lambda: PruneConfig(method="one-shoot", ratio=0.3), ValueError, "(did you mean 'oneshot'?)"),
    (lambda: PruneConfig(target={}), ValueError, "PruneConfig: nothing to aim for (target={}, ratio=None): give a "
                                                 "target"),
    (lambda: WorkflowConfig(model={"name": "lenet5"}), ValueError, "WorkflowConfig: no prune section: give prune=PruneConfig(target=...) or PruneConfig(ratio=...)"),
    (lambda: RecoverConfig(temperature=2.0), ValueError, "RecoverConfig: temperature=2.0 needs distill=True"),
    (lambda: RecoverConfig(distill_weight=0.3), ValueError, "distill_weight=0.3 needs distill=True"),
    (lambda: RecoverConfig(scratch_epochs=2), ValueError, "scratch_epochs=2 needs from_scratch=True"),
    (lambda: Recovery(temperature=2.0), ValueError, "Recovery: temperature=2.0 needs distill=True"),
    (lambda: Recovery(scratch_lr=0.5), ValueError, "scratch_lr=0.5 needs from_scratch=True"),
    (lambda: BaseConfig(path="m.safetensors", epochs=3, use_cache=False), ValueError,
     "BaseConfig: epochs=3, use_cache=False would not be read: they set how the base is trained"),
    (lambda: PruneConfig(ratio=0.3, score_batches=16), ValueError,  # oneshot's default criterion l1 reads no data
     "PruneConfig: score_batches=16 is read by the data-driven criteria (taylor, apoz, ...) of the oneshot"),
    (lambda: PruneConfig(ratio=0.3, criterion="l2", score_batches=2), ValueError, "score_batches=2 is read by"),
    (lambda: PruneConfig(method="coarse", criterion="taylor", ratio=0.3, score_batches=16), ValueError,
     "this run's method and criterion read no batches: drop it"),
    (lambda: PruneConfig(method="admm", ratio=0.3, options={"criterion": "taylor"}, score_batches=4), ValueError,
     "score_batches=4 is read by"),
])
def test_python_configs_refuse_what_the_cli_refuses(build, error, message):
    """Second audit: RecoverConfig(temperature=...) without distillation, PruneConfig(method="bogus") and
    PruneConfig(target={}) built, and failed (or were ignored) only inside run_workflow; --temperature without
    --distill and an unknown --method were refused by the CLI alone."""
    with pytest.raises(error) as e:
        build()
    assert message in str(e.value)


def test_python_configs_take_what_they_read():
    """The same settings where they are read: distillation on, from scratch on, a target or a ratio."""
    assert RecoverConfig(distill=True, temperature=2.0, distill_weight=0.3).temperature == 2.0
    assert RecoverConfig(from_scratch=True, scratch_epochs=2).scratch_epochs == 2
    assert PruneConfig(method="Deep-Compression", options={"sparsity": 0.9}).method == "deep_compression"
    assert PruneConfig(target={"macs": 0.5}).goal() == {"macs": 0.5}
    for method in ("oneshot", "iterative", "srr"):  # a data-driven criterion reads score_batches there
        assert PruneConfig(method=method, criterion="taylor", ratio=0.3, score_batches=16).score_batches == 16
    assert PruneConfig(method="coarse", ratio=0.3).score_batches == 8  # the default, set by nobody: allowed
    cfg = WorkflowConfig(model={"name": "lenet5"}, prune=PruneConfig(ratio=0.3))
    assert WorkflowConfig.from_json(cfg.to_json()) == cfg  # target {} (none) and a ratio still round-trip


def test_plan_without_ratio_or_target_is_refused():
    """Second audit: pk.plan(m, x) with neither ratio nor target returned an empty plan; ratio=0 still gives
    one (documented: it changes nothing)."""
    with pytest.raises(ValueError, match=r"pk.plan\(\): nothing to aim for: give ratio= .* or target="):
        pk.plan(_lenet(), X)
    with pytest.raises(ValueError, match="nothing to aim for"):
        pk.plan(_lenet(), X, PlanConfig())
    assert pk.plan(_lenet(), X, ratio=0).is_empty()


@pytest.mark.parametrize("options, message", [
    ({"target": pk.Target(macs=0.5), "latency_batch": 8}, "latency_batch times the latency model, built only for a "
                                                          "latency target or hw_widths=True"),
    ({"ratio": 0.3, "policy_kwargs": {"latency_threads": 2, "verify_latency": False}},
     "latency_threads times the latency model"),
    ({"ratio": 0.3, "latency_tolerance": 0.1}, "latency_tolerance checks a latency target, and none is given"),
    ({"target": pk.Target(latency=0.5), "hw_widths": False, "hw_tolerance": 0.1}, "hw_tolerance is read only with "
                                                                                  "hw_widths"),
])
def test_latency_options_of_auto_without_a_latency_target_are_refused(options, message):
    """Second audit: latency keys in policy_kw (latency_batch, ...) were accepted, and dropped, for a MACs
    target or a ratio."""
    with pytest.raises(ValueError) as e:
        pk.plan(_lenet(), X, policy="auto", **options)
    assert "PlanConfig: policy 'auto': " in str(e.value) and message in str(e.value)
    assert "(an option this plan would not read is refused, not ignored)" in str(e.value)
    # where they are read: a latency target, or hw_widths (its widths are timed) for a MACs target
    PlanConfig(target=pk.Target(latency=0.5), policy="auto", policy_kwargs={"latency_batch": 8, "hw_tolerance": 0.1})
    PlanConfig(target=pk.Target(macs=0.5), policy="auto", policy_kwargs={"hw_widths": True, "latency_batch": 8})


def test_models_declare_their_attention_heads():
    """What `heads=True` (--heads) is refused on: a model with no module declaring a head count."""
    assert not declares_heads(_lenet())
    assert declares_heads(torch.nn.Sequential(torch.nn.MultiheadAttention(8, num_heads=2)))
