"""Every criterion on a tiny conv net gives the ordering its definition implies."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.criteria import ActivationRecorder, get_criterion, group_sites, list_criteria

pytestmark = pytest.mark.usefixtures("single_thread")

DATA_DRIVEN = ["taylor", "apoz", "mean_activation", "hrank", "obd"]


def tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def batches(n: int = 3, b: int = 16):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(b, 2, 6, 6, generator=g), torch.randint(0, 3, (b,), generator=g)) for _ in range(n)]


def first_group(graph):
    return next(g for g in graph.prunable_groups() if any(m.key == "0.weight" for m in g.producers()))


def scores_of(name, model, data=None, **kw):
    graph = pk.trace(model, torch.randn(1, 2, 6, 6))
    s = get_criterion(name, **kw)(model, graph, data=data)
    assert set(s) == {g.name for g in graph.prunable_groups()}
    for g in graph.prunable_groups():
        assert s[g.name].shape == (g.size,) and torch.isfinite(s[g.name]).all()
    return s[first_group(graph).name]


def test_every_criterion_is_registered():
    assert {"l1", "l2", "bn_scale", "taylor", "apoz", "mean_activation", "fpgm", "hrank", "obd",
            "random"} <= set(list_criteria())


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_norms_rank_a_zeroed_filter_lowest(name):
    m = tiny()
    with torch.no_grad():
        m[0].weight[2].zero_()
    s = scores_of(name, m)
    assert int(s.argmin()) == 2 and float(s[2]) == 0.0 and float(s.min(0).values) < float(s.sort().values[1])


def test_bn_scale_ranks_small_gamma_lowest():
    m = tiny()
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([1.0, 0.8, 1.2, 0.01, 0.9, -1.5]))
    s = scores_of("bn_scale", m)
    assert torch.allclose(s, torch.tensor([1.0, 0.8, 1.2, 0.01, 0.9, 1.5]))


def test_fpgm_ranks_the_filter_at_the_median_lowest():
    m = tiny()
    with torch.no_grad():
        w = m[0].weight
        others = torch.cat([w[:4], w[5:]])
        w[4] = others.mean(0)  # the centre of the other filters: replaceable by them
    s = scores_of("fpgm", m)
    assert int(s.argmin()) == 4


@pytest.mark.parametrize("name", DATA_DRIVEN)
def test_a_dead_channel_ranks_lowest(name):
    m = tiny()
    with torch.no_grad():
        m[1].bias[1] = -50.0  # BN output always negative: the ReLU never lets channel 1 through
    s = scores_of(name, m, batches())
    assert int(s.argmin()) == 1
    assert float(s[1]) <= 1e-6 and float(s.max()) > 0


@pytest.mark.parametrize("name", ["taylor", "obd"])
def test_gradient_criteria_see_an_unused_channel(name):
    """Channel 5 is alive but the next layer ignores it: its gradient, and so its score, is zero."""
    m = tiny()
    with torch.no_grad():
        m[3].weight[:, 5] = 0.0
    s = scores_of(name, m, batches())
    assert int(s.argmin()) == 5 and float(s[5]) < 1e-9
    assert int(scores_of("l1", m).argmin()) != 5  # a weight norm cannot tell


def test_apoz_and_mean_activation_values():
    m = tiny()
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    data = batches(2)
    rec = ActivationRecorder(m, graph, ("apoz", "mean_activation"))
    with rec:
        with torch.no_grad():
            for x, _ in data:
                m(x)
    post = torch.relu(m[1](m[0](torch.cat([x for x, _ in data]))))
    expected_nonzero = (post > 0).float().mean((0, 2, 3))
    g = first_group(graph).name
    assert torch.allclose(rec.scores("apoz")[g], expected_nonzero, atol=1e-6)
    assert torch.allclose(rec.scores("mean_activation")[g], post.mean((0, 2, 3)), atol=1e-5)


def test_taylor_matches_a_hand_computation():
    m = tiny()
    x, y = batches(1)[0]
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    s = get_criterion("taylor", batches=1)(m, graph, data=[(x, y)])[first_group(graph).name]
    a = m[1](m[0](x))
    a.retain_grad()
    out = m[8](m[7](m[6](m[5](m[4](m[3](m[2](a))))))).float()
    torch.nn.functional.cross_entropy(out, y).backward()
    v = (a * a.grad).mean((0, 2, 3)).abs().detach()
    assert torch.allclose(s, v / v.norm(), atol=1e-5)


def test_data_driven_criteria_need_data_and_leave_the_model_alone():
    m = tiny().train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    for name in DATA_DRIVEN:
        with pytest.raises(ValueError, match="needs data"):
            get_criterion(name)(m, graph)
        get_criterion(name, batches=2)(m, graph, data=batches())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # BN statistics untouched
    assert all(p.grad is None for p in m.parameters()) and m.training


def test_batches_limit_counts():
    m = tiny()
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    seen = []
    h = m.register_forward_pre_hook(lambda mod, args: seen.append(1))
    get_criterion("apoz", batches=2)(m, graph, data=batches(5))
    h.remove()
    assert len(seen) == 2


def test_random_is_seeded():
    m = tiny()
    assert torch.equal(scores_of("random", m, seed=3), scores_of("random", m, seed=3))
    assert not torch.equal(scores_of("random", m, seed=3), scores_of("random", m, seed=4))


def test_coupled_group_scores_sum_over_producers():
    from prunekit.models import create
    m = create("resnet20", num_classes=10, in_channels=1, width=0.25)
    graph = pk.trace(m, torch.randn(1, 1, 12, 12))
    g = next(g for g in graph.prunable_groups() if len(g.producers()) > 1)
    s = get_criterion("l1")(m, graph)[g.name]
    sd = m.state_dict()
    manual = sum(sd[p.key].abs().flatten(1).sum(1) for p in g.producers())
    assert len(g.producers()) == 4 and torch.allclose(s, manual)
    sites = group_sites(m, g)
    assert len(sites) == 4 and all(isinstance(x.module, nn.BatchNorm2d) for x in sites)
    x = [(torch.randn(4, 1, 12, 12), torch.randint(0, 10, (4,)))]
    for name in DATA_DRIVEN:
        assert get_criterion(name, batches=1)(m, graph, data=x)[g.name].shape == (g.size,)
