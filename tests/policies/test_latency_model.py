"""Latency model mechanism on a fake latency table: traced layers, exact interpolation for bilinear costs,
prediction within 15% of "measured" on held-back candidates, cache round trip, hardware-friendly widths."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.policies.latency_layers import (build_layer, build_pruned, layer_widths, random_counts, time_layer,
                                              trace_layers)
from prunekit.policies.latency_model import LatencyModel

pytestmark = pytest.mark.usefixtures("single_thread")
X = torch.randn(1, 3, 16, 16)


class Net(nn.Module):
    """conv-bn-relu, a strided conv, a residual block on 32 channels, a projection shortcut, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24)
        self.conv4, self.bn4 = nn.Conv2d(24, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        y = torch.relu(self.bn3(self.conv3(x)))
        x = torch.relu(self.bn4(self.conv4(y)) + x)
        return self.fc(x.mean((2, 3)))


def fake_timer(penalty: float = 1.0, block: int = 1):
    """A fake latency table: conv/linear cost ~ MACs (`penalty` x when the output width is not a multiple
    of 8; widths padded up to multiples of `block`, as blocked kernels do), norm cost ~ elements, plus a small
    fixed cost per call."""
    def timer(cfg: dict, c_in: int, c_out: int) -> float:
        c_in, c_out = -(-c_in // block) * block, -(-c_out // block) * block
        spatial = math.prod(s for s in cfg["shape"] if s) or 1
        if cfg["kind"] == "conv":
            stride = math.prod(cfg["stride"])
            t = c_in * c_out * math.prod(cfg["kernel"]) * spatial / stride * 1e-5
        elif cfg["kind"] == "linear":
            t = c_in * c_out * 1e-5
        else:
            return 0.002 + c_in * spatial * 2e-6
        return 0.01 + t * (penalty if cfg["kind"] == "conv" and c_out % 8 else 1.0)
    return timer


def fake_model_timer(timer, overhead: float = 0.05):
    """'Measures' a real (pruned) model: the fake table at its actual layer widths, plus a fixed overhead."""
    def model_timer(model: nn.Module) -> float:
        layers = trace_layers(model, SimpleNamespace(groups=[]), X)
        return overhead + sum(timer(d["config"], *d["full"]) for d in layers)
    return model_timer


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = Net().eval()
    return model, pk.trace(model, X)


def test_trace_layers_sees_every_layer_and_its_groups(net):
    model, graph = net
    layers = {d["name"]: d for d in trace_layers(model, graph, X)}
    assert set(layers) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4", "fc"}
    assert layers["conv1"]["in_group"] is None  # image channels are fixed
    assert layers["conv3"]["in_group"] == layers["conv2"]["out_group"] == layers["conv4"]["out_group"]
    assert layers["conv3"]["out_group"] == layers["conv4"]["in_group"] == layers["bn3"]["in_group"]
    assert layers["conv2"]["config"]["shape"] == [0, 16, 16] and layers["conv3"]["config"]["shape"] == [0, 8, 8]
    # widths follow removal counts through kept_shapes
    from prunekit.graph.cost import kept_shapes
    g3 = layers["conv3"]["out_group"]
    assert layer_widths(layers["conv4"], kept_shapes(graph, {g3: 5})) == (19, 32)
    # the model's fast path gives the same widths for any counts
    lm = LatencyModel(model, graph, X, timer=fake_timer(), model_timer=lambda m: 1.0)
    for seed in range(5):
        counts = random_counts(graph, random.Random(seed))
        shapes = kept_shapes(graph, counts)
        assert lm.widths(counts) == [layer_widths(d, shapes) for d in lm.layers]


def test_build_layer_matches_shapes():
    cfg = {"kind": "conv", "type": "Conv2d", "shape": [0, 8, 8], "cdim": 1, "kernel": [3, 3], "stride": [2, 2],
           "padding": [1, 1], "dilation": [1, 1], "groups": 1, "depthwise": False, "bias": False}
    mod, shape = build_layer(cfg, 5, 7)
    assert shape == [5, 8, 8] and mod(torch.randn(2, *shape)).shape == (2, 7, 4, 4)
    assert time_layer(cfg, 5, 7, batch=2, device=torch.device("cpu"), threads=1, warmup=1, runs=2) > 0


def test_bilinear_costs_are_predicted_exactly(net):
    """Conv cost ~ c_in * c_out is bilinear, so the interpolated tables reproduce it at any width."""
    model, graph = net
    timer = fake_timer()
    lm = LatencyModel.build(model, X, graph=graph, timer=timer, model_timer=fake_model_timer(timer), calib=4,
                            holdout=5)
    assert lm.coef[1] == pytest.approx(1.0, abs=1e-6) and lm.coef[0] == pytest.approx(0.05, abs=1e-6)
    assert lm.holdout["max_abs_err"] < 1e-6
    assert lm.dense_ms == pytest.approx(fake_model_timer(timer)(model))


def test_prediction_within_15_percent_on_held_back_candidates(net):
    """A table with a step (outputs off multiples of 8 cost 1.5x), a cliff that depends on both widths (large
    weights 1.15x) and another overhead: within 15% on held-back real models, and the step corrections help."""
    model, graph = net
    step = fake_timer(penalty=1.5)

    def timer(cfg, c_in, c_out):
        big = cfg["kind"] == "conv" and c_in * c_out * math.prod(cfg["kernel"]) > 3000
        return step(cfg, c_in, c_out) * (1.15 if big else 1.0)

    kw = dict(graph=graph, timer=timer, model_timer=fake_model_timer(timer, 0.2), calib=6, holdout=10, seed=3)
    lm = LatencyModel.build(model, X, **kw)
    assert len(lm.holdout["candidates"]) == 10
    assert lm.holdout["max_abs_err"] < 0.15 and lm.holdout["mean_abs_err"] < 0.05
    coarse = LatencyModel.build(model, X, fine=False, **kw)
    assert coarse.holdout["mean_abs_err"] > lm.holdout["mean_abs_err"]
    # the held-back candidates were not used in the fit and are real pruned models of varied widths
    fitted = [c["counts"] for c in lm.calibration]
    assert all(c["counts"] not in fitted for c in lm.holdout["candidates"])
    assert len({tuple(sorted(c["counts"].items())) for c in lm.holdout["candidates"]}) == 10
    assert lm.ratio({}) == pytest.approx(1.0)
    assert lm.predict({}) == pytest.approx(lm.dense_ms, rel=0.05)  # the fit passes near the measured dense model


def test_cache_round_trip(net, tmp_path):
    model, graph = net
    calls = []
    base = fake_timer()

    def timer(cfg, ci, co):
        calls.append((ci, co))
        return base(cfg, ci, co)

    kw = dict(graph=graph, timer=timer, model_timer=fake_model_timer(base), calib=2, holdout=2,
              cache_folder=tmp_path)
    first = LatencyModel.build(model, X, **kw)
    n = len(calls)
    assert n > 0 and len(list(tmp_path.glob("*.json"))) == 1
    again = LatencyModel.build(model, X, **kw)
    assert len(calls) == n  # nothing timed again
    c = random_counts(graph, random.Random(1))
    assert again.predict(c) == pytest.approx(first.predict(c))  # (may time new off-grid widths, lazily)
    before = len(calls)
    assert LatencyModel.build(model, X, refresh=True, **kw).predict(c) == pytest.approx(first.predict(c))
    assert len(calls) - before >= n  # refresh times everything again


def test_efficient_widths_prefer_multiples_of_8(net):
    """When kernels pad widths to blocks of 8, only multiples of 8 are worth keeping."""
    model, graph = net
    timer = fake_timer(block=8)
    lm = LatencyModel.build(model, X, graph=graph, timer=timer, model_timer=fake_model_timer(timer), calib=2,
                            holdout=0)
    for g in graph.prunable_groups():
        widths = lm.efficient_widths(g.name)
        assert widths[-1] == g.size
        assert widths == list(range(8, g.size + 1, 8)), (g.name, widths)
        curve = lm.group_curve(g.name)
        assert all(curve[w] < min(curve[v] for v in curve if v > w) for w in widths if w < g.size)


def test_build_pruned_removes_counts(net):
    model, graph = net
    counts = random_counts(graph, random.Random(0))
    pruned = build_pruned(model, graph, counts)
    sizes = {g.name: g.size - counts.get(g.name, 0) for g in graph.prunable_groups()}
    assert pk.trace(pruned, X).prunable_groups()[0].size in sizes.values()
    assert pruned(X).shape == (1, 10)
