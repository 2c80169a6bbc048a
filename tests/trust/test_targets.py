"""A target the guards cannot meet raises TargetError with what was achieved (or, with strict=False, warns and
returns the most pruned plan); a met target is recorded in the plan with the fraction actually kept."""
from __future__ import annotations

import warnings

import pytest
import torch

import prunekit as pk
from prunekit.methods import run_method
from prunekit.models import create

from methods.toy import data, net

pytestmark = pytest.mark.usefixtures("single_thread")
X = torch.randn(1, 1, 12, 12)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10, in_channels=1, width=0.25)
    return model, pk.trace(model, X)


@pytest.mark.parametrize("policy", ["uniform", "global", "width", "srr"])
def test_unreachable_target_raises_with_the_achieved_value(resnet, policy):
    model, graph = resnet
    with pytest.raises(pk.TargetError) as e:
        pk.plan(model, X, target=pk.Target(macs=0.01), policy=policy, graph=graph)
    err = e.value
    assert err.target == {"macs": 0.01} and 0.01 < err.achieved["macs"] < 1
    assert "macs=0.01" in str(err) and f"{err.achieved['macs']:.4f}" in str(err) and "strict=False" in str(err)
    with pytest.warns(UserWarning, match="cannot be met"):
        best = pk.plan(model, X, target=pk.Target(macs=0.01), policy=policy, graph=graph, strict=False)
    pruned = pk.apply(create("resnet20", num_classes=10, in_channels=1, width=0.25), best)
    dense = pk.count(model, X).macs
    assert pk.count(pruned, X).macs / dense == pytest.approx(err.achieved["macs"], rel=1e-9)
    assert best.meta["achieved"] == err.achieved


def test_met_target_records_what_was_kept(resnet):
    model, graph = resnet
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a met target warns of nothing
        plan = pk.plan(model, X, target=pk.Target(macs=0.5, params=0.7), policy="srr", graph=graph)
    achieved = plan.meta["achieved"]
    assert achieved["macs"] <= 0.5 and achieved["params"] <= 0.7
    pruned = pk.apply(create("resnet20", num_classes=10, in_channels=1, width=0.25), plan)
    assert pk.count(pruned, X).macs / pk.count(model, X).macs == pytest.approx(achieved["macs"], rel=1e-9)
    assert plan.meta["config"]["target"] == {"macs": 0.5, "params": 0.7}


def test_a_ratio_that_removes_nothing_raises(resnet):
    model, graph = resnet
    with pytest.raises(ValueError, match="removes no channel"):
        pk.plan(model, X, ratio=0.01, graph=graph)
    with pytest.warns(UserWarning, match="removes no channel"):
        assert pk.plan(model, X, ratio=0.01, graph=graph, strict=False).is_empty()


def test_methods_hold_to_the_target():
    loader, ex = data(n=32)
    with pytest.raises(pk.TargetError) as e:  # raised at planning, before any fine-tuning
        run_method("oneshot", net(), loader, None, ex, target=pk.Target(macs=0.01), finetune_epochs=5)
    assert e.value.achieved["macs"] > 0.01
    with pytest.raises(pk.TargetError):  # steps toward the target are not held to it, the end is
        run_method("iterative", net(), loader, None, ex, target=pk.Target(macs=0.01), steps=2, step_epochs=0,
                   finetune_epochs=0)
    with pytest.warns(UserWarning, match="cannot be met"):
        _, res = run_method("iterative", net(), loader, None, ex, target=pk.Target(macs=0.01), steps=2,
                            step_epochs=0, finetune_epochs=0, strict=False)
    assert res.macs_kept == pytest.approx(e.value.achieved["macs"], rel=1e-9)


def test_a_size_target_is_a_fraction_of_the_state_dicts_bytes_and_says_so(resnet, tmp_path):
    """Second audit: `--target-size 0.3` is met on the state dict's safetensors bytes (what size_bytes and
    size_kept measure), while a pk.save file also carries the model's description and plan; the help, the
    missed-target message and report.md name the state-dict bytes."""
    from prunekit.cli import build_parser
    from prunekit.measure import serialized_size
    from prunekit.report import render_markdown

    model, graph = resnet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # auto without data scores by a magnitude proxy, and says so
        plan = pk.plan(model, X, target=pk.Target(size=0.3), policy="auto", graph=graph,
                       policy_kwargs={"evaluations": 12})
    pruned = pk.apply(create("resnet20", num_classes=10, in_channels=1, width=0.25), plan)
    kept = serialized_size(pruned) / serialized_size(model)
    assert kept <= 0.3 and kept == pytest.approx(plan.meta["achieved"]["size"], rel=1e-2)  # header digits aside
    files = pk.save(pruned, tmp_path / "p.safetensors", plan=plan), pk.save(model, tmp_path / "d.safetensors")
    assert files[0].stat().st_size / files[1].stat().st_size > kept  # the file also holds the plan: not the target

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(pk.TargetError, match=r"target size=0\.01 \(state-dict bytes, achieved 0\.\d{4}\) can"):
            pk.plan(model, X, target=pk.Target(size=0.01), policy="auto", graph=graph, policy_kwargs={"evaluations": 4})
    md = render_markdown({"model": {"name": "resnet20"}, "data": {}, "metrics": {},
                          "extra": {"target": {"asked": {"size": 0.3}, "planned": {"size": kept}, "met": True}}})
    assert f"kept): size 0.3 (state-dict bytes); the plan keeps size {kept:.4f}: met." in md
    prune = build_parser()._subparsers._group_actions[0].choices["prune"]
    (flag,) = [a for a in prune._actions if a.dest == "target_size"]
    assert flag.help == "fraction of the state-dict bytes (--policy auto)"
