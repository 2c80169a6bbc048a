"""No argument is silently dropped: every public function and every registered policy, criterion and method
rejects an unknown keyword with that exact keyword in the message; ignore entries must match; ranges and
conflicts raise; configs round-trip through JSON and are recorded in the plan and the method's result."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.criteria import get_criterion, list_criteria
from prunekit.methods import METHODS, MethodConfig, list_methods, run_method
from prunekit.methods.deep_compression import deep_compression
from prunekit.planning import PlanConfig
from prunekit.policies import get_policy, list_policies
from prunekit.transformers.methods import CALIBRATION_METHODS, run_calibration_method
from prunekit.unstructured import WEIGHT_CRITERIA, prune_unstructured, weight_scores

from methods.toy import data, net

pytestmark = pytest.mark.usefixtures("single_thread")
X = torch.randn(1, 1, 8, 8)
BOGUS = "bogus_option"


def two_convs() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def assert_names(exc: pytest.ExceptionInfo, *words: str) -> None:
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


# ----------------------------------------------------------------------------- pk.plan
@pytest.mark.parametrize("kw, named, hint", [
    ({"min_chanels": 2}, "'min_chanels'", "min_channels"),
    ({"policy": "global", "normalise": "max"}, "'normalise'", "'normalize'"),
    ({"critrion": "l2"}, "'critrion'", "criterion"),
])
def test_plan_rejects_misspelt_keywords(kw, named, hint):
    with pytest.raises(TypeError) as e:
        pk.plan(two_convs(), X, ratio=0.5, **kw)
    assert_names(e, named, hint)


def test_plan_rejects_unknown_criterion_and_policy_options():
    with pytest.raises(TypeError) as e:
        pk.plan(two_convs(), X, ratio=0.5, criterion_kwargs={"bogus": 1})
    assert_names(e, "'bogus'", "seed")  # the valid options of l1 are listed
    with pytest.raises(TypeError) as e:
        pk.plan(two_convs(), X, ratio=0.5, criterion="taylor", criterion_kwargs={"batch": 2})
    assert_names(e, "'batch'", "'batches'")
    with pytest.raises(TypeError) as e:
        pk.plan(two_convs(), X, ratio=0.5, policy="srr", policy_kwargs={"gama": 0.1})
    assert_names(e, "'gama'", "'gamma'")
    with pytest.raises(TypeError) as e:
        pk.plan(two_convs(), X, ratio=0.5, policy="uniform", normalize="mean")  # a knob of another policy
    assert_names(e, "'normalize'")


def test_plan_takes_filter_fn_and_every_trace_option():
    m = two_convs()
    full = pk.plan(m, X, ratio=0.5)
    assert any(k.startswith("0.") for k, _, _ in full.removals())
    kept_first = pk.plan(m, X, ratio=0.5, filter_fn=lambda mod, name: name != "0")
    assert not any(k.startswith("0.") for k, _, _ in kept_first.removals())
    assert sorted(k for k, _, _ in kept_first.removals()) == ["2.bias", "2.weight", "6.weight"]
    assert kept_first.meta["config"]["filter_fn"] == "<given; not serialisable>"
    assert pk.plan(m, X, ratio=0.5, probe=False, prune_outputs=False).removals() == full.removals()
    with pytest.raises(TypeError) as e:  # the graph already fixed what the tracer options would change
        pk.plan(m, X, ratio=0.5, graph=pk.trace(m, X), ignore=["0"])
    assert_names(e, "ignore")


def test_ignore_is_one_name_and_must_match():
    m = two_convs()
    one = pk.plan(m, X, ratio=0.5, ignore="0")
    assert one.removals() == pk.plan(m, X, ratio=0.5, ignore=["0"]).removals()
    assert not any(k.startswith("0.") for k, _, _ in one.removals())
    with pytest.raises(ValueError) as e:
        pk.plan(m, X, ratio=0.5, ignore=["nosuch"])
    assert_names(e, "'nosuch'")
    with pytest.raises(ValueError) as e:
        pk.trace(m, X, ignore=["0.weigth"])
    assert_names(e, "'0.weigth'", "0.weight")  # the nearest names are offered
    with pytest.raises(ValueError) as e:
        pk.trace(m, X, ignore=[nn.LSTM])
    assert_names(e, "LSTM")
    assert pk.trace(m, X, ignore=[nn.Linear]).groups  # a type that occurs is fine


@pytest.mark.parametrize("kw, named", [
    ({"ratio": 0.3, "target": pk.Target(macs=0.5)}, "not both"),
    ({"ratio": 1.5}, "ratio=1.5"),
    ({"ratio": -0.1}, "ratio=-0.1"),
    ({"ratio": 0.3, "round_to": 0}, "round_to=0"),
    ({"ratio": 0.3, "round_to": 64}, "round_to=64"),
    ({"ratio": 0.3, "max_ratio": -1}, "max_ratio=-1"),
    ({"ratio": 0.3, "max_ratio": 2}, "max_ratio=2"),
    ({"ratio": 0.3, "min_channels": 0}, "min_channels=0"),
])
def test_out_of_range_and_conflicting_options_raise(kw, named):
    with pytest.raises(ValueError) as e:
        pk.plan(two_convs(), X, **kw)
    assert_names(e, named)


# ----------------------------------------------------------------------------- every registered name
@pytest.fixture(scope="module")
def scored():
    m = two_convs()
    g = pk.trace(m, X)
    return m, g, get_criterion("l1")(m, g)


@pytest.mark.parametrize("name", list_policies())
def test_every_policy_rejects_an_unknown_keyword(scored, name):
    m, g, s = scored
    with pytest.raises(TypeError) as e:
        get_policy(name)(m, g, s, ratio=0.3, **{BOGUS: 1})
    assert_names(e, f"'{BOGUS}'", f"policy {name!r}", "max_ratio")


@pytest.mark.parametrize("name", list_criteria())
def test_every_criterion_rejects_an_unknown_keyword(name):
    with pytest.raises(TypeError) as e:
        get_criterion(name, **{BOGUS: 1})
    assert_names(e, f"'{BOGUS}'", "seed")


@pytest.mark.parametrize("name", list_methods())
def test_every_method_rejects_an_unknown_keyword_before_training(name):
    loader, ex = data(n=16)
    with pytest.raises(TypeError) as e:
        run_method(name, net(), loader, None, ex, ratio=0.3, **{BOGUS: 1})
    assert_names(e, f"'{BOGUS}'", "finetune_epochs", "min_channels")
    with pytest.raises(TypeError) as e:
        METHODS[name](net(), loader, None, ex, ratio=0.3, trace_kw={"ignor": ["0"]})
    assert_names(e, "'ignor'")


@pytest.mark.parametrize("name", list(WEIGHT_CRITERIA))
def test_every_weight_criterion_rejects_an_unknown_keyword(name):
    with pytest.raises(TypeError) as e:
        weight_scores(two_convs(), name, **{BOGUS: 1})
    assert_names(e, f"'{BOGUS}'")
    with pytest.raises(TypeError) as e:
        prune_unstructured(two_convs(), 0.5, name, **{BOGUS: 1})
    assert_names(e, f"'{BOGUS}'")


def test_public_functions_reject_unknown_keywords(tmp_path):
    m = two_convs()
    plan = pk.plan(m, X, ratio=0.5)
    loader, _ = data(n=16)
    calls = [lambda: pk.trace(m, X, **{BOGUS: 1}), lambda: pk.apply(two_convs(), plan, **{BOGUS: 1}),
             lambda: pk.verify(m, m, plan, X, **{BOGUS: 1}), lambda: pk.count(m, X, **{BOGUS: 1}),
             lambda: pk.save(m, tmp_path / "m.safetensors", **{BOGUS: 1}),
             lambda: pk.load(tmp_path / "m.safetensors", **{BOGUS: 1}),
             lambda: deep_compression(net(), loader, **{BOGUS: 1}),
             lambda: run_method("oneshot", net(), loader, None, X, ratio=0.3, criterion="taylor",
                                criterion_kw={BOGUS: 1})]
    for call in calls:
        with pytest.raises(TypeError) as e:
            call()
        assert_names(e, BOGUS)


def test_registry_names_normalise_one_way():
    assert get_policy("GLOBAL") is get_policy("global")
    assert METHODS["Group-Lasso"] is METHODS["group_lasso"]
    with pytest.raises(ValueError) as e:
        get_policy("unifrom")
    assert_names(e, "'unifrom'", "uniform", "srr")


# ----------------------------------------------------------------------------- configs
def test_plan_config_round_trips_and_is_recorded():
    cfg = PlanConfig(target=pk.Target(macs=0.6), criterion="l2", policy="global", policy_kwargs={"normalize": "max"},
                     min_channels=2, round_to=2, ignore="6", seed=5)
    data_ = json.loads(json.dumps(cfg.to_dict()))
    assert PlanConfig.from_dict(data_) == cfg and cfg.ignore == ["6"]
    plan = pk.plan(two_convs(), X, cfg)
    assert plan.meta["config"] == data_
    assert json.loads(plan.to_json())["meta"]["config"]["policy_kwargs"] == {"normalize": "max"}
    with pytest.raises(TypeError) as e:
        PlanConfig.from_dict({**data_, "min_chanels": 1})
    assert_names(e, "'min_chanels'")
    given = PlanConfig(ratio=0.3, filter_fn=lambda m, n: True).to_dict()
    with pytest.raises(ValueError, match="filter_fn"):
        PlanConfig.from_dict(given)  # a callable that was given cannot be read back: refuse, never drop it
    with pytest.raises(TypeError):
        pk.plan(two_convs(), X, cfg, ratio=0.3)  # config and keywords at once


@pytest.mark.parametrize("name", list_methods())
def test_method_configs_round_trip(name):
    cls: type[MethodConfig] = METHODS.config_type(name)
    cfg = cls.from_keywords(name, {"ratio": 0.25, "seed": 3, "finetune_epochs": 2})
    assert cfg.plan.seed == cfg.recovery.seed == 3
    back = cls.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="target"):
        cls.from_keywords(name, {})


@pytest.mark.parametrize("name", list(CALIBRATION_METHODS))
def test_every_calibration_method_checks_its_config_before_touching_the_model(name):
    """Unknown keywords name the valid ones; config and keywords at once, or another method's config, raise;
    the config round-trips through JSON. The model and loader are never read (None and [] here)."""
    cls = CALIBRATION_METHODS.config_type(name)
    with pytest.raises(TypeError) as e:
        run_calibration_method(name, None, [], **{BOGUS: 1})
    assert_names(e, f"{name}()", f"'{BOGUS}'", "calib_batches")
    with pytest.raises(TypeError, match="config= and keyword"):
        run_calibration_method(name, None, [], config=cls(), calib_batches=2)
    other = next(CALIBRATION_METHODS.config_type(n) for n in CALIBRATION_METHODS if n != name)
    with pytest.raises(TypeError, match=f"configured by {cls.__name__}"):
        run_calibration_method(name, None, [], config=other())
    cfg = cls(calib_batches=3)
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="calib_batches"):
        cls(calib_batches=0)


def test_method_result_records_its_config():
    loader, ex = data(n=32)
    model, res = run_method("oneshot", net(), loader, None, ex, ratio=0.5, finetune_epochs=0, seed=4)
    assert res.config.plan.seed == 4 and res.plan.meta["method_config"] == res.config.to_dict()
    assert res["plan"] is res.plan and res.get("criterion") == "l1" and res.to_dict()["config"]["plan"]["ratio"] == 0.5
    json.dumps(res.to_dict())


@pytest.mark.parametrize("kw, named", [
    ({"lr": -1.0}, "lr=-1.0"), ({"finetune_epochs": -1}, "finetune_epochs=-1"),
    ({"distill_weight": 2.0}, "distill_weight=2.0"), ({"score_batches": 0}, "score_batches=0"),
    ({"policy": "global", "policy_kw": {"normalize": "median"}}, "'median'"),
    ({"policy": "srr", "policy_kw": {"quantile": 1.5}}, "quantile=1.5"),
])
def test_method_and_policy_options_are_range_checked(kw, named):
    loader, ex = data(n=16)
    with pytest.raises(ValueError) as e:
        run_method("oneshot", net(), loader, None, ex, ratio=0.3, **kw)
    assert_names(e, named)
