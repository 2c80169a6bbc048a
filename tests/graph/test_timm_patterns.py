"""Widths that come from module attributes and paths stacked then reduced, as in timm's SelectiveKernel
(skresnet, skresnext), Res2Net/DLA Bottle2neck and CSPNet's cross stages: the chunks of an equal split lose the
same channels, a reduction or softmax over the stacked paths keeps the channel labels (each line along the
paths is one channel, so it is exact), and the module attribute that sizes the split (`in_channels`, `width`,
`expand_chs`) is patched; a module of that kind without a patch has its group excluded with the error as
reason, never a crash."""
import copy

import pytest
import torch
from timm.layers import SelectiveKernel
from timm.models.cspnet import CrossStage, CrossStage3
from timm.models.dla import DlaBottle2neck
from timm.models.res2net import Bottle2neck
from torch import nn

import prunekit as pk
from prunekit.surgery.patches import unregister_patch
from prunekit.surgery.verify import make_input_sensitive

from .timm_zoo import zeroed_outputs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def _sk_net(groups: int = 1, split_input: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         SelectiveKernel(16, 24, groups=groups, split_input=split_input, rd_channels=8),
                         nn.Conv2d(24, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def test_selective_kernel_prunes_exactly_and_patches_its_split_width():
    x = torch.randn(2, 3, 12, 12)
    for groups, split, stem, width, out in [(1, True, (8, 6), 12, 18), (4, True, None, 16, 16),
                                            (1, False, (16, 12), 12, 18)]:
        model = _sk_net(groups, split)
        plan = pk.plan(model, x, ratio=0.25)
        assert plan.exact and not plan.meta.get("excluded"), (groups, split, plan.reasons())
        summary = plan.summary()
        # an equal split couples channel c of both halves (8 units of 2 channels); with groups=4 each path
        # conv has 2 inputs per group, so 25% of the stem cannot be removed evenly and it stays; its outputs
        # go by whole conv groups (4 of 6 channels kept in each)
        assert summary.get("0") == ({"size": stem[0], "kept": stem[1]} if stem else None), summary
        pruned = pk.apply(copy.deepcopy(model), plan)
        sk = pruned[3]
        assert sk.in_channels == pruned[0].out_channels == width and sk.out_channels == out, (groups, split)
        assert [p.conv.in_channels for p in sk.paths] == ([width // 2] * 2 if split else [width] * 2)
        assert sk.attn.fc_reduce.in_channels == out and sk.attn.fc_select.out_channels == 2 * out
        with torch.no_grad():
            assert _rel(zeroed_outputs(model, plan, x), pruned(x)) < 1e-5
        assert pk.verify(model, pruned, plan, x).exact


_ACT = {"act_layer": nn.ReLU, "norm_layer": nn.BatchNorm2d}
# (block, its input channels, the attribute holding the chunk size, its value before -> after 25% uniform)
BLOCKS = {"res2net": (lambda: Bottle2neck(64, 16, base_width=32, scale=4, norm_layer=nn.BatchNorm2d), 64,
                      "width", 8, 6),
          "dla_res2": (lambda: DlaBottle2neck(32, 32, scale=4, base_width=32), 32, "width", 64, 48),
          "cross_stage": (lambda: CrossStage(16, 32, 1, 1, 1, block_ratio=0.5, **_ACT), 16, "expand_chs", 32, 24),
          "cross_stage3": (lambda: CrossStage3(16, 32, 2, 1, 1, block_ratio=0.5, **_ACT), 16, "expand_chs", 32, 24)}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_timm_blocks_with_an_attribute_chunk_size_prune_exactly(name):
    make, cin, attr, before, after = BLOCKS[name]
    torch.manual_seed(0)
    block = make().eval()
    cout = block(torch.randn(1, cin, 6, 6)).shape[1]
    model = nn.Sequential(nn.Conv2d(3, cin, 3, padding=1), nn.BatchNorm2d(cin), nn.ReLU(), block,
                          nn.Conv2d(cout, 4, 1)).eval()
    x = torch.randn(2, 3, 6, 6)
    make_input_sensitive(model, x)
    plan = pk.plan(model, x, ratio=0.25)
    assert plan.exact and not plan.meta.get("excluded"), plan.reasons()
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert (getattr(model[3], attr), getattr(pruned[3], attr)) == (before, after)
    assert sum(p.numel() for p in pruned.parameters()) < 0.65 * sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert _rel(zeroed_outputs(model, plan, x), pruned(x)) < 1e-5


class Paths(nn.Module):
    """Two branches stacked on a new dim, weighted by a softmax over it and summed (no library code)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b, self.gate = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1), nn.Conv2d(c, 2 * c, 1)

    def forward(self, x):
        s = torch.stack([self.a(x), self.b(x)], 1)  # (B, 2, C, H, W)
        w = self.gate(s.mean(1).amax((2, 3), keepdim=True))
        w = torch.softmax(w.view(w.shape[0], 2, -1, 1, 1), 1)
        return (s * w).sum(1)


def test_stacked_paths_reduced_over_the_stack_dim_keep_their_channels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), Paths(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(2, 3, 6, 6)
    graph = pk.trace(model, x)
    group = next(g for g in graph.groups if g.name.startswith("1.a"))
    keys = {(m.key, m.dim) for m in group.members}
    # the mean over the paths, the gate's inputs, its two output blocks and the consumer share one channel set
    assert {("1.b.weight", 0), ("1.gate.weight", 1), ("1.gate.weight", 0), ("3.weight", 1)} <= keys
    assert group.prunable and group.exact and group.size == 8
    plan = pk.plan(model, x, ratio=0.25)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert plan.exact and pruned[1].gate.weight.shape[:2] == (12, 6)
    with torch.no_grad():
        assert _rel(zeroed_outputs(model, plan, x), pruned(x)) < 1e-5


class HalfSplit(nn.Module):
    """Splits its input in two with a chunk size kept as an attribute, like SelectiveKernel."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.half = c // 2
        self.p, self.q = nn.Conv2d(c // 2, c, 1), nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        a, b = torch.split(x, self.half, 1)
        return self.p(a) + self.q(b)


def test_a_split_width_read_from_an_attribute_is_excluded_until_a_patch_sets_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 12, 1), HalfSplit(12), nn.ReLU(), nn.Conv2d(12, 4, 1)).eval()
    x = torch.randn(2, 3, 5, 5)
    graph = pk.trace(model, x)
    split = graph.group("0")
    assert not split.prunable and "breaks the forward" in split.reason, split.reason
    plan = pk.plan(model, x, ratio=0.25)  # the other group still prunes; the split one is left whole
    assert plan.summary() == {"1.p (+1)": {"size": 12, "kept": 9}}
    pk.register_patch(HalfSplit, lambda mod, ctx: setattr(mod, "half", mod.p.weight.shape[1]))
    try:
        plan = pk.plan(model, x, ratio=0.25)
        assert plan.summary()["0"] == {"size": 6, "kept": 4} and plan.exact
        pruned = pk.apply(copy.deepcopy(model), plan)
        assert pruned[1].half == 4
        with torch.no_grad():
            assert _rel(zeroed_outputs(model, plan, x), pruned(x)) < 1e-5
    finally:
        unregister_patch(HalfSplit)
