"""register_patch: users teach apply how to update the attributes of their own modules."""
import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.surgery import unregister_patch
from prunekit.surgery.patches import patch_for


class Grouped(nn.Module):
    """Views its input as (4, units) and scales each unit: the width lives under a name no heuristic knows."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, units))
        self.units = units

    def forward(self, x):
        return (x.reshape(x.shape[0], 4, self.units) * self.gain).flatten(1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 4 * 16)
        self.block = Grouped(16)
        self.fc2 = nn.Linear(4 * 16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.block(self.fc1(x))))


@pytest.fixture
def patched():
    def fix(module, ctx):
        (split,) = [s for s in ctx.splits if s["old"] == module.units]
        assert split["new"] == module.gain.shape[0]
        module.units = split["new"]

    pk.register_patch(Grouped, fix)
    yield fix
    unregister_patch(Grouped)


def test_without_a_patch_the_probe_excludes_the_group():
    torch.manual_seed(0)
    graph = pk.trace(Net(), torch.randn(2, 8))
    g = graph.group("fc1")
    assert not g.prunable and "breaks the forward" in g.reason


def test_registered_patch_makes_the_group_prunable_and_exact(patched):
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(5, 8)
    plan = pk.plan(model, x, ratio=0.25)
    kept = plan.summary()["fc1"]["kept"]
    assert kept == 12  # 16 units, 25% removed: the count coupling keeps all 4 views alike
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert pruned.block.units == 12 and pruned.fc1.out_features == 48 and pruned.fc2.in_features == 48
    report = pk.verify(model, pruned, plan, x)
    assert plan.exact and report.exact and report.max_rel_diff < 1e-6


def test_subclasses_use_the_registered_patch_and_bad_registrations_raise(patched):
    class Sub(Grouped):
        pass

    assert patch_for(Sub(3)) is patched
    assert patch_for(nn.Conv2d(1, 1, 1)) is not None  # prunekit's own table
    with pytest.raises(TypeError, match="nn.Module subclass"):
        pk.register_patch(int, patched)
    with pytest.raises(TypeError, match="callable"):
        pk.register_patch(Grouped, 3)
    with pytest.raises(KeyError, match="no patch registered for Sub"):
        unregister_patch(Sub)
