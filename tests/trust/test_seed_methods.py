"""Same seed, same result, bit for bit: every method run twice (from different global RNG states) gives equal
state_dicts and report numbers; a different seed changes what randomness decides (the random criterion, the
auto search, the re-initialisation of training from scratch)."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

import prunekit as pk
from prunekit.methods import list_methods, run_method

from methods.toy import data, net

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = {"finetune_epochs": 1, "max_steps_per_epoch": 2}
OWN = {"coarse": {"every": 1, "prunes": 2}, "admm": {"iterations": 2}, "iterative": {"steps": 2, "step_max_steps": 1},
       "slimming": {"sparsity_epochs": 1}, "group_lasso": {"sparsity_epochs": 1}}


def run(name: str, model, global_seed: int, **kw):
    torch.manual_seed(global_seed)  # whatever state the caller left: the method's seed alone decides
    loader, ex = data(n=64)
    kw = {"target": pk.Target(macs=0.6), **FAST, **OWN.get(name, {}), **kw}
    return run_method(name, copy.deepcopy(model), loader, None, ex, **kw)


def untimed(value):
    """`value` without wall-clock entries (time_s), the only numbers a rerun may change."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "time_s"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def numbers(res) -> dict:
    hist = untimed(res.history)
    return {"macs_kept": res.macs_kept, "params_kept": res.params_kept, "widths": res.widths, "history": hist,
            "removals": res.plan.removals()}


def assert_same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", list_methods())
def test_same_seed_gives_identical_weights_and_reports(name):
    model = net()
    m1, r1 = run(name, model, global_seed=1, seed=7)
    m2, r2 = run(name, model, global_seed=2, seed=7)
    assert_same_weights(m1, m2)
    assert numbers(r1) == numbers(r2)


def test_different_seed_changes_the_random_criterion():
    model = net()
    plans = [run("oneshot", model, 0, criterion="random", seed=s, finetune_epochs=0)[1].plan.removals()
             for s in (1, 1, 2)]
    assert plans[0] == plans[1] and plans[0] != plans[2]


def test_different_seed_changes_training_from_scratch():
    model = net()
    a, _ = run("oneshot", model, 0, seed=1, from_scratch=True, scratch_epochs=0)
    b, _ = run("oneshot", model, 5, seed=1, from_scratch=True, scratch_epochs=0)
    c, _ = run("oneshot", model, 0, seed=2, from_scratch=True, scratch_epochs=0)
    assert_same_weights(a, b)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_auto_search_follows_its_seed():
    model, x = net(), torch.randn(1, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "auto: no data")

        def plan(seed: int, global_seed: int):
            torch.manual_seed(global_seed)
            return pk.plan(model, x, target=pk.Target(macs=0.5), policy="auto", evaluations=12, seed=seed).removals()

        assert plan(3, 0) == plan(3, 9)
        assert plan(3, 0) != plan(4, 0)
