"""Every torchvision classification model traces, prunes 30% uniform, runs, shrinks and verifies.

The smallest family members run by default; the rest carry the `heavy` marker and run with
`make test-heavy`.
"""
import copy

import pytest
import torch
import torchvision

import prunekit as pk

ALL = sorted(torchvision.models.list_models(module=torchvision.models))
LIGHT = {"alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "googlenet", "mnasnet0_5",
         "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf", "regnet_y_400mf", "resnet18",
         "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t", "vgg11"}
SIZES = {"inception_v3": 75, "googlenet": 32, "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224,
         "vit_h_14": 224, "maxvit_t": 224}
PARAMS = [pytest.param(n, marks=() if n in LIGHT else pytest.mark.heavy) for n in ALL]


@pytest.mark.parametrize("name", PARAMS)
def test_torchvision_model(name):
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, num_classes=10, **kw).eval()
    for s in ([SIZES[name]] if name in SIZES else [32, 64, 96, 128, 224]):  # the smallest input it accepts
        x = torch.randn(1, 3, s, s)
        try:
            with torch.no_grad():
                ref = model(x)
            break
        except RuntimeError:
            continue
    plan = pk.plan(model, x, ratio=0.3)
    assert not plan.is_empty(), name
    pruned = pk.apply(copy.deepcopy(model), plan)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == ref.shape
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < 0.95 * before
    report = pk.verify(model, pruned, plan, x)
    if plan.exact:
        assert report.exact, f"{name}: {report}"
    else:
        assert plan.reasons()
