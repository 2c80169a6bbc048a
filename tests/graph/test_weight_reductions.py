"""Reductions over a weight at forward time: standardisation (mean/var over input channels) is approximate,
with the reason, and never claimed exact; norms (weight norm, spectral norm) are exact where the maths is."""
import copy

import pytest
import torch
from timm.layers import ScaledStdConv2d, StdConv2d
from torch import nn
from torch.nn.utils import parametrizations

import prunekit as pk


def _zeroing_rel(model, plan, x) -> float:
    z = copy.deepcopy(model)
    sd = z.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, dim, idx in plan.removals():
            sd[key].index_fill_(dim, torch.tensor(idx), 0.0)
        pruned = pk.apply(copy.deepcopy(model), plan)
        a, b = z(x), pruned(x)
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("conv", [StdConv2d, ScaledStdConv2d])
def test_standardised_conv_input_channels_are_approximate(conv):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), conv(16, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(2, 3, 12, 12)
    plan = pk.plan(model, x, ratio=0.25)
    assert plan.summary() == {"0": {"size": 16, "kept": 12}, "2": {"size": 8, "kept": 6}}
    graph = pk.trace(model, x)
    assert graph.group("0").notes == ["batch-norm statistics of a parameter over these channels (weight "
                                      "standardisation)"]
    assert graph.group("2").exact  # statistics are per output channel: removing whole rows is exact
    assert not plan.exact and _zeroing_rel(model, plan, x) > 1e-3


def test_weight_norm_and_spectral_norm():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    wn = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), parametrizations.weight_norm(nn.Linear(16, 8)), nn.ReLU(),
                       nn.Linear(8, 3)).eval()
    graph = pk.trace(wn, x)
    assert graph.group("0").exact  # input channels of the normalised weight: its norm changes alike
    assert "weight norm" in graph.group("2.parametrizations.weight").notes[0]  # its rows: 0 / 0 when zeroed
    plan = pk.PruningPlan.from_kept(graph, {"0": list(range(0, 16, 2))})  # half the normalised layer's inputs
    assert plan.exact and _zeroing_rel(wn, plan, x) < 1e-5
    sn = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), parametrizations.spectral_norm(nn.Linear(16, 8)), nn.ReLU(),
                       nn.Linear(8, 3)).eval()
    plan = pk.plan(sn, x, ratio=0.25)
    assert plan.summary() == {"0": {"size": 16, "kept": 12}} and plan.exact and _zeroing_rel(sn, plan, x) < 1e-5


def test_a_mean_over_a_weight_marks_the_channels_it_mixes():
    class Centred(nn.Linear):
        def forward(self, x):
            w = self.weight - self.weight.mean(1, keepdim=True)  # mixes the input channels of every row
            return nn.functional.linear(x, w, self.bias)

    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), Centred(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval(), \
        torch.randn(4, 6)
    graph = pk.trace(model, x)
    assert graph.group("0").notes == ["mean over channels"] and graph.group("2").exact
