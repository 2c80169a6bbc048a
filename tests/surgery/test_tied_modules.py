"""A module reached under several names (timm's CoaT: `self.mlp2 = self.mlp3 = self.mlp4 = Mlp(...)`) is one
set of tensors: tracing couples its names into one group, and applying a plan slices each tensor once."""
from __future__ import annotations

import copy

import torch
from torch import nn

import prunekit as pk


class SharedMlp(nn.Module):
    """Three names for one MLP, applied to three branches, as CoaT's parallel blocks do."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.mlp2 = self.mlp3 = self.mlp4 = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.stem(x)
        return self.head(self.mlp2(h) + self.mlp3(h * 2) + self.mlp4(h * 3))


def test_shared_module_is_one_group_sliced_once():
    torch.manual_seed(0)
    model = SharedMlp().eval()
    x = torch.randn(5, 8)
    graph = pk.trace(model, x)
    group = next(g for g in graph.prunable_groups() if any(m.key == "mlp2.0.weight" and m.dim == 0 for m in g.members))
    assert {m.key for m in group.members} >= {"mlp2.0.weight", "mlp3.0.weight", "mlp4.0.weight"}
    assert group.size == 32
    drop = [0, 5, 9, 30]
    plan = pk.PruningPlan.from_kept(graph, {group.name: [c for c in range(32) if c not in drop]})
    for _ in range(5):  # every time: ids of freed tensors are reused, so an id-based check must not depend on them
        pruned = pk.apply(copy.deepcopy(model), plan)
        assert pruned.mlp2 is pruned.mlp3 is pruned.mlp4
        assert pruned.mlp3[0].weight.shape == (28, 16) and pruned.mlp4[2].weight.shape == (16, 28)
        keep = [c for c in range(32) if c not in drop]
        assert torch.equal(pruned.mlp2[0].weight, model.mlp2[0].weight[keep])
        assert torch.equal(pruned.mlp2[2].weight, model.mlp2[2].weight[:, keep])
        # removing hidden units of a ReLU MLP whose rows are zeroed first gives the same output
        ref = copy.deepcopy(model)
        with torch.no_grad():
            ref.mlp2[0].weight[drop] = 0
            ref.mlp2[0].bias[drop] = 0
        assert torch.allclose(pruned(x), ref(x), atol=1e-6)
