import copy
import json

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.surgery.verify import zeroed_copy


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


X = torch.randn(2, 3, 8, 8)


def test_groups_and_removals():
    m = small_cnn()
    g = pk.trace(m, X)
    names = [gr.name for gr in g.groups]
    assert names == ["0", "3", "8"]
    assert [gr.size for gr in g.groups] == [8, 16, 4]
    assert [gr.prunable for gr in g.groups] == [True, True, False]
    first = g.group("0")
    assert {(mm.key, mm.dim, mm.role) for mm in first.members} >= {
        ("0.weight", 0, "out"), ("0.bias", 0, "out"), ("1.weight", 0, "norm"), ("1.running_var", 0, "norm"),
        ("3.weight", 1, "in")}
    plan = pk.PruningPlan.from_kept(g, {"0": [0, 2, 4, 6]})
    rem = dict(((k, d), v) for k, d, v in plan.removals())
    assert rem[("0.weight", 0)] == [1, 3, 5, 7]
    assert rem[("3.weight", 1)] == [1, 3, 5, 7]
    assert rem[("1.running_mean", 0)] == [1, 3, 5, 7]
    p = pk.apply(copy.deepcopy(m), plan)
    assert p[0].out_channels == 4 and p[1].num_features == 4 and p[3].in_channels == 4


def test_ratio_zero_changes_nothing_bit_for_bit():
    m = small_cnn()
    plan = pk.plan(m, X, ratio=0)
    assert plan.is_empty() and plan.removals() == []
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = pk.apply(m, plan)
    assert out is m
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_zeroing_removals_equals_pruned_model():
    m = small_cnn()
    plan = pk.plan(m, X, ratio=0.5)
    pruned = pk.apply(copy.deepcopy(m), plan)
    z = zeroed_copy(m, plan)
    assert torch.allclose(z(X), pruned(X), atol=1e-6)
    rep = pk.verify(m, pruned, plan, X)
    assert rep.exact and rep.params_after < rep.params_before


def test_json_round_trip_replays_on_fresh_model():
    m = small_cnn()
    plan = pk.plan(m, X, ratio=0.5)
    text = plan.to_json()
    again = pk.PruningPlan.from_json(text)
    assert again.removals() == plan.removals()
    a = pk.apply(copy.deepcopy(m), plan)
    b = pk.apply(copy.deepcopy(m), again)
    assert torch.equal(a(X), b(X))
    assert json.loads(text)["version"] == 1


def test_bad_plans_give_clear_errors():
    m = small_cnn()
    g = pk.trace(m, X)
    with pytest.raises(ValueError, match="out of range"):
        pk.PruningPlan.from_kept(g, {"0": [0, 99]})
    with pytest.raises(ValueError, match="every channel"):
        pk.PruningPlan.from_kept(g, {"0": []})
    with pytest.raises(ValueError, match="may not be pruned|pinned"):
        pk.PruningPlan.from_kept(g, {"8": [0, 1]})
    data = pk.plan(m, X, ratio=0.5).to_dict()
    data["groups"][0]["kept"] = [0, 100]
    with pytest.raises(ValueError, match="out of range"):
        pk.PruningPlan.from_dict(data)
    with pytest.raises(ValueError, match="not valid JSON"):
        pk.PruningPlan.from_json("{nope")
    # a plan for another model
    other = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 2, 3)).eval()
    with pytest.raises(pk.PlanMismatchError, match="shape"):
        pk.apply(other, pk.plan(m, X, ratio=0.5))
    # applying the same plan twice: the model no longer has the shapes the plan expects
    plan = pk.plan(m, X, ratio=0.5)
    p = pk.apply(copy.deepcopy(m), plan)
    with pytest.raises(pk.PlanMismatchError):
        pk.apply(p, plan)


def test_unknown_op_names_op_and_module_and_ignore_excludes_it():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x, dim=1).abs()

    m = nn.Sequential(nn.Conv2d(3, 8, 3), Spectral(), nn.Flatten(), nn.LazyLinear(2))
    m(X)
    m.eval()
    with pytest.raises(pk.UnsupportedOpError, match=r"_fft_r2c.*module '1' \(Spectral\)"):
        pk.trace(m, X)
    g = pk.trace(m, X, ignore=["1"])
    assert not g.group("0").prunable
    assert "excluded" in g.group("0").reason


def test_ignore_and_filter_fn_pin_groups():
    m = small_cnn()
    g = pk.trace(m, X, ignore=["3"])
    # conv 3 may not change at all: neither its filters nor its input channels (group "0")
    assert not g.group("3").prunable and not g.group("0").prunable
    assert "excluded" in g.group("3").reason
    g2 = pk.trace(m, X, filter_fn=lambda mod, name: not isinstance(mod, nn.Conv2d) or name != "0")
    assert not g2.group("0").prunable and g2.group("3").prunable


def test_round_to_keeps_multiples():
    m = small_cnn()
    plan = pk.plan(m, X, ratio=0.3, round_to=4)
    p = pk.apply(copy.deepcopy(m), plan)
    assert p[0].out_channels % 4 == 0 and p[3].out_channels % 4 == 0
    assert p[3].out_channels < 16


def test_target_macs_uniform():
    m = small_cnn()
    base = pk.count(m, X).macs
    plan = pk.plan(m, X, target=pk.Target(macs=0.5))
    p = pk.apply(copy.deepcopy(m), plan)
    got = pk.count(p, X).macs / base
    assert 0.35 < got <= 0.5 + 1e-6


def test_optimizer_state_is_sliced():
    m = small_cnn()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m.train()
    m(X).sum().backward()
    opt.step()
    old_buf = opt.state[m[0].weight]["momentum_buffer"].clone()
    plan = pk.PruningPlan.from_kept(pk.trace(m, X), {"0": [0, 1, 2, 3]})
    pk.apply(m, plan, optimizer=opt)
    new_buf = opt.state[m[0].weight]["momentum_buffer"]
    assert new_buf.shape == m[0].weight.shape == (4, 3, 3, 3)
    assert torch.equal(new_buf, old_buf[:4])
    assert any(p is m[0].weight for p in opt.param_groups[0]["params"])
    m.zero_grad()
    m(X).sum().backward()
    opt.step()  # runs with the sliced state
