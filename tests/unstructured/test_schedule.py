"""AGP schedule values and the gradual pruner as a step callback."""
import pytest
import torch
from torch import nn

from prunekit.surgery.masks import sparsity
from prunekit.unstructured import AGPPruner, agp_sparsity


def test_agp_values():
    assert agp_sparsity(0, 100, 0.9) == pytest.approx(0.0)
    assert agp_sparsity(50, 100, 0.9) == pytest.approx(0.9 * (1 - 0.5 ** 3))   # 0.7875
    assert agp_sparsity(100, 100, 0.9) == pytest.approx(0.9)
    assert agp_sparsity(150, 100, 0.9) == pytest.approx(0.9)
    assert agp_sparsity(60, 100, 0.8, initial=0.2, begin=10) == pytest.approx(0.8 + (0.2 - 0.8) * 0.5 ** 3)
    with pytest.raises(ValueError):
        agp_sparsity(0, 0, 0.5)


def test_agp_pruner_in_training_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    pruner = AGPPruner(model, final_sparsity=0.8, total_steps=20, frequency=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    zeros_before = None
    for step in range(1, 26):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner(None, step)
        zeros = model[0].weight.detach() == 0
        if zeros_before is not None:
            assert bool((zeros | ~zeros_before).all())    # monotone: pruned weights stay pruned
        zeros_before = zeros
    assert [t for t, _ in pruner.history] == [5, 10, 15, 20]
    assert pruner.history[1][1] == pytest.approx(0.8 * (1 - 0.5 ** 3), abs=0.01)
    assert sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_agp_per_layer_targets():
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    pruner = AGPPruner(model, {"0": 0.9, "2": 0.5}, total_steps=10, frequency=10)
    assert pruner.sparsity_at(5) == pytest.approx({"0.weight": 0.9 * 0.875, "2.weight": 0.5 * 0.875})
    for _ in range(10):
        pruner()
    assert (model[0].weight == 0).float().mean().item() == pytest.approx(0.9, abs=1e-3)
    assert (model[2].weight == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)
