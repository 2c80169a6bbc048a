"""prepare_inference: BatchNorm folded into convolutions (and Linear) equals the original, channels-last keeps
the outputs, pruned models fold like dense ones, and bad options are refused by name."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.models import create
from prunekit.surgery.inference import (InferenceConfig, InferenceError, conv_bn_pairs, fold_batchnorm,
                                        prepare_inference)

pytestmark = pytest.mark.usefixtures("single_thread")


def _random_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine terms, so that folding has something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


class ConvBnLinearBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.side = nn.Conv2d(3, 8, 1)  # its output is also added below, so its norm must stay
        self.side_bn = nn.BatchNorm2d(8)
        self.fc, self.bn1 = nn.Linear(8, 6), nn.BatchNorm1d(6)

    def forward(self, x):
        s = self.side(x)
        y = torch.relu(self.bn(self.conv(x))) + self.side_bn(s) + s
        return self.bn1(self.fc(y.mean((2, 3))))


@pytest.mark.parametrize("arch", ["resnet20", "vgg11", "mobilenetv2"])
def test_folded_model_equals_original(arch):
    torch.manual_seed(0)
    model = _random_stats(create(arch, num_classes=10, in_channels=3, width=0.25))
    x = torch.randn(4, 3, 32, 32)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast, rep = prepare_inference(model, x)
    assert len(rep.folded) == n_bn > 0  # every norm of these nets follows a conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.inference_mode():
        diff = (fast(x) - model(x)).abs().max().item()
    assert diff <= 1e-5 * rep.scale and rep.max_abs_diff == pytest.approx(diff, abs=1e-7)


def test_pruned_model_folds_and_goes_channels_last():
    torch.manual_seed(0)
    model = _random_stats(create("resnet20", num_classes=10, in_channels=3, width=0.5))
    x = torch.randn(2, 3, 32, 32)
    pruned = pk.apply(model, pk.plan(model, x, ratio=0.4, criterion="l1", policy="uniform", round_to=4))
    fast, rep = prepare_inference(pruned, x, fold_bn=True, channels_last=True)
    assert rep.channels_last and len(rep.folded) == sum(isinstance(m, nn.BatchNorm2d) for m in pruned.modules())
    conv = fast.get_submodule(rep.folded[0][0])
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[0] % 4 == 0
    with torch.inference_mode():
        assert (fast(x) - pruned(x)).abs().max().item() <= 1e-5 * rep.scale


def test_only_norms_whose_layer_feeds_nothing_else_fold():
    torch.manual_seed(0)
    model = _random_stats(ConvBnLinearBn())
    assert conv_bn_pairs(model) == [("conv", "bn"), ("fc", "bn1")]
    x = torch.randn(3, 3, 8, 8)
    fast, rep = prepare_inference(model, x)
    assert isinstance(fast.side_bn, nn.BatchNorm2d) and isinstance(fast.bn1, nn.Identity)
    assert rep.max_abs_diff <= 1e-5 * rep.scale
    plain, rep0 = prepare_inference(model, x, fold_bn=False)
    assert rep0.folded == [] and rep0.max_abs_diff == 0.0 and isinstance(plain.bn, nn.BatchNorm2d)


class SharedConv(nn.Module):
    """One conv called twice, each call with its own norm: folding either norm would change both calls."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn_a, self.bn_b = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)
        self.head, self.bn_h = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn_h(self.head(self.bn_b(self.conv(self.bn_a(self.conv(x))))))


def test_shared_modules_are_not_folded():
    model = _random_stats(SharedConv())
    assert conv_bn_pairs(model) == [("head", "bn_h")]
    fast, rep = prepare_inference(model, torch.randn(2, 3, 8, 8))
    assert rep.folded == [("head", "bn_h")] and rep.max_abs_diff <= 1e-5 * rep.scale


def test_refusals_name_the_problem():
    model = _random_stats(ConvBnLinearBn())
    with pytest.raises(InferenceError, match="eval mode"):
        fold_batchnorm(ConvBnLinearBn().train())
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) 'fold' \\(did you mean 'fold_bn'\\?\\)"):
        prepare_inference(model, fold=True)
    with pytest.raises(InferenceError, match="channels_last=1"):
        InferenceConfig(channels_last=1)
    with pytest.raises(TypeError, match="got config= and keyword options \\['fold_bn'\\]"):
        prepare_inference(model, config=InferenceConfig(), fold_bn=False)
    assert InferenceConfig.from_dict(InferenceConfig(channels_last=True).to_dict()) == InferenceConfig(channels_last=True)

    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x  # data-dependent: torch.fx cannot trace it

    with pytest.raises(InferenceError, match="torch.fx cannot trace Dynamic.*fold_bn=False"):
        prepare_inference(Dynamic().eval())
    assert prepare_inference(Dynamic().eval(), fold_bn=False)[1].folded == []
