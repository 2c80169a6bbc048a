"""Policies land on MAC/parameter targets within one channel per group, respect the guards, and SRR measures
redundancy the way its definition says."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.criteria import get_criterion
from prunekit.graph.cost import predict
from prunekit.models import create
from prunekit.policies import get_policy, list_policies, select_kept, srr_redundancy
from prunekit.policies.srr import components, covering_number, redundancy

pytestmark = pytest.mark.usefixtures("single_thread")
POLICIES = ["uniform", "global", "width", "srr"]
X = torch.randn(1, 1, 12, 12)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10, in_channels=1, width=0.5)
    graph = pk.trace(model, X)
    return model, graph, get_criterion("l1")(model, graph)


def one_channel_cost(graph, key: str) -> float:
    base = predict(graph, {})[key]
    return max(base - predict(graph, {g.name: 1})[key] for g in graph.prunable_groups()) / base


def test_registered():
    assert set(POLICIES) <= set(list_policies())


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("key,keep", [("macs", 0.5), ("macs", 0.3), ("params", 0.6)])
def test_policy_lands_on_target(resnet, policy, key, keep):
    model, graph, scores = resnet
    counts = get_policy(policy)(model, graph, scores, target=pk.Target(**{key: keep}))
    base, now = predict(graph, {}), predict(graph, counts)
    frac = now[key] / base[key]
    assert frac <= keep + 1e-9  # met
    assert frac >= keep - one_channel_cost(graph, key) - 1e-9  # by no more than one channel of some group
    # the prediction is what surgery gives
    pruned = pk.apply(copy.deepcopy(model), pk.PruningPlan.from_kept(graph, select_kept(graph, scores, counts)))
    measured = pk.count(pruned, X)
    assert measured.macs == pytest.approx(now["macs"], rel=1e-6)
    assert measured.params == pytest.approx(now["params"], rel=1e-6)


@pytest.mark.parametrize("policy", POLICIES)
def test_plain_ratio(resnet, policy):
    model, graph, scores = resnet
    counts = get_policy(policy)(model, graph, scores, ratio=0.25)
    total = sum(g.size for g in graph.prunable_groups())
    if policy == "uniform":
        assert counts == {g.name: round(0.25 * g.size) for g in graph.prunable_groups()}
    else:
        assert sum(counts.values()) == round(0.25 * total)


@pytest.mark.parametrize("policy", POLICIES)
def test_guards_hold_at_extreme_targets(resnet, policy):
    model, graph, scores = resnet
    counts = get_policy(policy)(model, graph, scores, target=pk.Target(macs=0.01), min_channels=3, max_ratio=0.75)
    for g in graph.prunable_groups():
        n = counts.get(g.name, 0)
        assert g.size - n >= 3 and n <= 0.75 * g.size


def test_api_plan_accepts_every_policy(resnet):
    model, graph, _ = resnet
    for policy in POLICIES:
        plan = pk.plan(model, X, target=pk.Target(macs=0.5), policy=policy, graph=graph)
        assert not plan.is_empty()


def test_global_takes_from_the_weakest_group_first(resnet):
    model, graph, scores = resnet
    weak = graph.prunable_groups()[3].name
    s = {n: v.clone() for n, v in scores.items()}
    s[weak] = torch.tensor([0.001, 0.002, 0.003, 0.004, 1.0, 1.0, 1.0, 1.0])  # far below any peer, normalised
    for how in ("max", "mean", "l2"):
        counts = get_policy("global")(model, graph, s, ratio=0.02, normalize=how)
        assert counts == {weak: 4}, how


def test_width_takes_from_the_widest_groups(resnet):
    model, graph, scores = resnet
    counts = get_policy("width")(model, graph, scores, ratio=0.1)
    widest = max(g.size for g in graph.prunable_groups())
    assert counts and all(graph.group(n).size == widest for n in counts)
    widths = {g.name: g.size - counts.get(g.name, 0) for g in graph.prunable_groups() if g.size == widest}
    assert max(widths.values()) - min(widths.values()) <= 1  # taken evenly, one at a time


# ----------------------------------------------------------------------------- SRR
def test_graph_numbers():
    path = torch.zeros(5, 5, dtype=torch.bool)
    for i in range(4):
        path[i, i + 1] = path[i + 1, i] = True
    assert components(path) == 1 and covering_number(path) == 2
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert components(empty) == 4 and covering_number(empty) == 4 and redundancy(empty) == pytest.approx(1.0)
    full = torch.ones(6, 6, dtype=torch.bool)
    assert redundancy(full) == pytest.approx(6.0)
    two = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2)).bool()
    assert components(two) == 2 and covering_number(two) == 2 and redundancy(two) == pytest.approx(5 / 2)


def duplicate_vs_orthogonal() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        base = torch.randn(2, 3, 3)
        m[0].weight.copy_(base + 0.001 * torch.randn(8, 2, 3, 3))       # eight near-copies of one filter
        q, _ = torch.linalg.qr(torch.randn(72, 72))
        m[3].weight.copy_(q[:8].reshape(8, 8, 3, 3))                    # eight orthogonal filters
    return m


def test_srr_duplicated_layer_is_more_redundant_than_orthogonal():
    m = duplicate_vs_orthogonal()
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    dup = next(g.name for g in graph.prunable_groups() if g.producers()[0].key == "0.weight")
    orth = next(g.name for g in graph.prunable_groups() if g.producers()[0].key == "3.weight")
    r = srr_redundancy(m, graph, gamma=0.023)  # the reproduction's threshold on distance / sqrt(length)
    assert r[dup] == pytest.approx(8.0) and r[orth] == pytest.approx(1.0)
    for q in (0.05, 0.3):  # scale-free: a quantile of all pairwise distances
        r = srr_redundancy(m, graph, quantile=q)
        assert r[dup] > 1.5 and r[orth] == pytest.approx(1.0)
    # and the loop takes every channel it may from the duplicated layer first
    counts = get_policy("srr")(m, graph, get_criterion("l1")(m, graph), ratio=0.25, max_ratio=0.5)
    assert counts == {dup: 4}


def test_srr_removes_smallest_l1_vertex_and_recomputes():
    """Two groups: 4 duplicates + 4 distinct filters (R = 8/(0.65*5+0.35*5) = 1.6) against 8 orthogonal
    (R = 1). SRR takes from the first until its duplicates are gone (smallest L1 first: the duplicates are
    scaled down), then both have R = 1 and ties go to the wider group."""
    m = duplicate_vs_orthogonal()
    with torch.no_grad():
        w = m[0].weight
        q, _ = torch.linalg.qr(torch.randn(18, 18))
        w[4:] = q[:4].reshape(4, 2, 3, 3) * 3.0
        w[:4] = w[0] * 0.5
    graph = pk.trace(m, torch.randn(1, 2, 6, 6))
    dup = next(g.name for g in graph.prunable_groups() if g.producers()[0].key == "0.weight")
    assert srr_redundancy(m, graph, gamma=0.01)[dup] == pytest.approx(8 / 5)
    from prunekit.policies.srr import srr_sequence
    seq = list(srr_sequence(m, graph, gamma=0.01, max_ratio=0.9))
    assert seq[:3] == [dup] * 3  # three of the four duplicates go first (the fourth then is distinct)
