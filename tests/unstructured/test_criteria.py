"""Unstructured criteria and one-shot pruning: counts, scopes, LAMP and OBD sanity."""
import pytest
import torch
from torch import nn

from prunekit.surgery.masks import get_masks, skip_classifier, sparsity, target_layers
from prunekit.unstructured import (
    lamp_layer, lamp_scores, layer_sparsities, masks_from_scores, obd_scores, prune_unstructured, random_scores,
)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))
    with torch.no_grad():
        net[2].weight.mul_(10)   # layers on different scales: global magnitude and LAMP differ
    return net


def test_lamp_layer_by_hand():
    w = torch.tensor([3.0, -1.0, 2.0, 0.0, 2.0])
    # squares 9, 1, 4, 0, 4; sums over |v| >= |u|: 9 | 18 | 17 | 18 | 17 (ties counted for both)
    expected = torch.tensor([1.0, 1 / 18, 4 / 17, 0.0, 4 / 17])
    torch.testing.assert_close(lamp_layer(w), expected)


def test_lamp_scores_sanity():
    model = _mlp()
    scores = lamp_scores(model)
    for key, m in target_layers(model):
        s = scores[key].reshape(-1)
        assert s.max().item() == pytest.approx(1.0)
        assert bool(((s >= 0) & (s <= 1)).all())
        order = m.weight.detach().abs().reshape(-1).argsort()
        assert bool((s[order].diff() >= 0).all())   # same order as magnitude inside a layer
    assert torch.equal(lamp_layer(torch.zeros(3, 3)), torch.zeros(3, 3))


def test_lamp_global_keeps_every_layer_where_magnitude_does_not():
    lamp = prune_unstructured(_mlp(), 0.98, "lamp", scope="global")
    assert all(int(m.sum()) >= 1 for m in lamp.values())
    mag = masks_from_scores({k: m.weight.detach().abs() for k, m in target_layers(_mlp())}, 0.98)
    assert int(mag["0.weight"].sum()) == 0 and int(mag["2.weight"].sum()) == round(0.02 * 2150)


@pytest.mark.parametrize("criterion", ["magnitude", "lamp", "random"])
def test_global_prune_exact_count(criterion):
    model = _mlp()
    total = sum(m.weight.numel() for _, m in target_layers(model))
    masks = prune_unstructured(model, 0.7, criterion, scope="global")
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.7 * total)
    assert sparsity(model) == pytest.approx(round(0.7 * total) / total)


def test_layer_scope_per_layer_rates_and_filter():
    model = _mlp()
    rates = {"0": 0.5, "2.weight": 0.9, "linear": 0.2}
    assert layer_sparsities(model, rates) == {"0.weight": 0.5, "2.weight": 0.9, "4.weight": 0.2}
    masks = prune_unstructured(model, rates, scope="layer", filter_fn=skip_classifier(model))
    assert set(masks) == {"0.weight", "2.weight"}
    assert int((~masks["0.weight"]).sum()) == 400 and int((~masks["2.weight"]).sum()) == 1080
    w = model[0].weight.detach().abs()
    assert w[masks["0.weight"]].min() >= w[~masks["0.weight"]].max()   # magnitude: smallest go
    with pytest.raises(ValueError, match="global"):
        prune_unstructured(model, rates, scope="global")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prune_unstructured(model, 1.5)
    with pytest.raises(ValueError, match="unknown weight criterion"):
        prune_unstructured(model, 0.5, "nope")


def test_sparsity_zero_changes_nothing():
    model = _mlp()
    x = torch.randn(3, 20)
    ref = model(x)
    prune_unstructured(model, 0.0)
    assert torch.equal(model(x), ref)


def test_random_scores_seeded():
    a, b = random_scores(_mlp(), seed=3), random_scores(_mlp(), seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], random_scores(_mlp(), seed=4)["0.weight"])


def test_obd_saliency_matches_fisher_by_hand():
    model = _mlp()
    torch.manual_seed(1)
    data = [(torch.randn(8, 20), torch.randint(0, 5, (8,))) for _ in range(3)]
    scores = obd_scores(model, data=data, num_batches=3)
    fisher = torch.zeros_like(model[4].weight)
    for x, y in data:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        fisher += model[4].weight.grad ** 2
    expected = fisher / 3 * model[4].weight.detach() ** 2 / 2
    torch.testing.assert_close(scores["4.weight"], expected)
    masks = prune_unstructured(model, 0.5, "obd", data=data)
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)
    assert set(get_masks(model)) == set(masks)
    with pytest.raises(ValueError, match="needs data"):
        obd_scores(model)
