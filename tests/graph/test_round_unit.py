"""round_to keeps every pruned tensor width a multiple, in as few channels as that needs: a channel repeated in
each attention head (torchvision's ViT embedding) is kept in steps of round_to / gcd(round_to, heads)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import prunekit as pk
from prunekit.graph.trace import round_unit

pytestmark = pytest.mark.usefixtures("single_thread")


def _vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                hidden_dim=64, mlp_dim=128, num_classes=10).eval()


EX = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_round_unit_counts_positions_per_channel():
    one = {("a.weight", 0): [[0], [1], [2]]}
    four = {("a.weight", 0): [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]}
    assert round_unit(1, four) == 1 and round_unit(8, one) == 8
    assert round_unit(8, four) == 2 and round_unit(16, four) == 4 and round_unit(3, four) == 3
    assert round_unit(8, {**one, ("b.weight", 1): four[("a.weight", 0)]}) == 8  # every member must stay a multiple: the strictest wins
    assert round_unit(8, {("a.weight", 0): [[0, 1], [2]]}) == 8  # unequal spans: whole multiples of round_to
    assert round_unit(8, {}) == 8


def test_vit_embedding_is_rounded_per_head_and_every_width_stays_a_multiple():
    model = _vit()
    groups = {g.name: g for g in pk.trace(model, EX, round_to=8).prunable_groups()}
    emb = next(g for name, g in groups.items() if name.startswith("conv_proj"))
    assert emb.size == 16 and emb.round_to == 2  # 64 = 4 heads x 16: 2 kept channels are 8 tensor positions
    assert all(g.round_to == 8 for g in groups.values() if g is not emb)  # the MLP hidden units: one each
    base = pk.count(model, EX).macs
    plan = pk.plan(model, EX, target=pk.Target(macs=0.5), criterion="l1", policy="uniform", round_to=8)
    pk.apply(model, plan)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] + \
             [m.normalized_shape[0] for m in model.modules() if isinstance(m, nn.LayerNorm)] + \
             [model.conv_proj.out_channels]
    assert all(w % 8 == 0 for w in widths[:-1] if w != 10)  # the 10 logits are the model's output, not pruned
    assert all(w % 8 == 0 for w in widths[-1:])
    kept = pk.count(model, EX).macs / base
    assert 0.42 <= kept <= 0.5  # near the target, not a whole head-sized step below it
    assert model(EX).shape == (1, 10)


def test_whole_heads_stay_prunable_under_round_to():
    groups = pk.trace(_vit(), EX, heads=True, round_to=8).prunable_groups()
    heads = [g for g in groups if g.size == 4]  # a group per attention block: its 4 heads of 16 positions
    assert heads and all(g.round_to == 1 for g in heads)
