"""Every registered model: shapes, gradients, rebuild from its spec, hand-counted sizes."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunekit.models import create, default_input_size, list_models, register_model, spec_of
from prunekit.models import registry

pytestmark = pytest.mark.usefixtures("single_thread")

INPUTS = [(1, 28), (3, 32)]  # Fashion-MNIST-like and CIFAR-like


def _kw(name: str, size: int) -> dict:
    return {"input_size": size} if name.startswith("lenet") else {}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registered_names():
    assert list_models() == sorted(["lenet300", "lenet5", "resnet20", "resnet32", "resnet56", "resnet110",
                                    "vgg11", "vgg16", "vgg19", "mobilenetv2"])
    assert default_input_size("lenet5") == 28 and default_input_size("resnet20") == 32
    assert default_input_size("torchvision:resnet18") == 224


@pytest.mark.parametrize("channels, size", INPUTS)
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shape(name, channels, size):
    torch.manual_seed(0)
    # half width keeps the sweep fast; full widths are built in test_hand_counted_parameters
    model = create(name, num_classes=7, in_channels=channels, width=0.5, **_kw(name, size)).train()
    x = torch.randn(2, channels, size, size)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.logsumexp(1).sum().backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    first = next(p for p in model.parameters() if p.ndim > 1)
    assert first.shape[1] == channels or first.shape[1] == channels * size * size  # conv or flattened fc
    assert first.grad.abs().sum() > 0  # gradient reaches the input layer


@pytest.mark.parametrize("name", list_models())
def test_rebuild_from_spec(name):
    model = create(name, num_classes=4, in_channels=1, width=0.25, **_kw(name, 28)).eval()
    spec = spec_of(model)
    assert spec.name == name and spec.kwargs["num_classes"] == 4 and spec.kwargs["width"] == 0.25
    clone = type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))).build().eval()
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    clone.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(clone(x), model(x))


def test_hand_counted_parameters():
    assert n_params(create("lenet300", in_channels=1)) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert n_params(create("lenet5", in_channels=1)) == 61_706
    assert n_params(create("lenet5", in_channels=3, input_size=32)) == (
        6 * 3 * 25 + 6 + 16 * 6 * 25 + 16 + 16 * 6 * 6 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10)

    def resnet(n, w=(16, 32, 64), classes=10):
        p = 16 * 3 * 9 + 2 * 16
        c_in = w[0]
        for c in w:
            for i in range(n):
                p += c_in * c * 9 + c * c * 9 + 4 * c + ((c_in * c + 2 * c) if c_in != c else 0)
                c_in = c
        return p + w[-1] * classes + classes

    assert n_params(create("resnet20")) == resnet(3) == 272_474
    assert n_params(create("resnet56")) == resnet(9)
    assert n_params(create("resnet110")) == resnet(18)
    vgg11 = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    assert n_params(create("vgg11")) == sum(a * b * 9 + 2 * b for a, b in vgg11) + 512 * 10 + 10


def test_width_multiplier_scales_channels():
    r = create("resnet20", width=0.5)
    assert [r.conv1.out_channels, r.layer2[0].conv1.out_channels, r.fc.in_features] == [8, 16, 32]
    v = create("vgg16", width=0.25)
    assert v.classifier.in_features == 128
    m = create("mobilenetv2", width=0.5)
    assert m.features[0][0].out_channels == 16 and m.classifier.in_features == 1280
    assert n_params(create("mobilenetv2", width=0.5)) < 0.4 * n_params(create("mobilenetv2"))
    assert create("lenet300", width=2.0).fc1.out_features == 600


def test_resnet_shortcuts_are_projections_only_where_shapes_change():
    r = create("resnet32")
    projections = [name for name, m in r.named_modules() if name.endswith("shortcut") and len(m) > 0]
    assert projections == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert isinstance(r.layer2[0].shortcut[0], nn.Conv2d) and r.layer2[0].shortcut[0].kernel_size == (1, 1)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError) as e:
        create("resnet21")
    assert all(n in str(e.value) for n in list_models()) and "torchvision:<name>" in str(e.value)
    with pytest.raises(ValueError, match="unknown torchvision model 'nope'; valid: .*resnet18"):
        create("torchvision:nope")
    with pytest.raises(TypeError, match=r"takes no argument\(s\) \['depth'\]"):
        create("resnet20", depth=3)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        create("lenet300", input_size=object())


@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:mobilenet_v3_small"])
@pytest.mark.parametrize("channels", [1, 3])
def test_torchvision_models(name, channels):
    model = create(name, num_classes=5, in_channels=channels).train()
    y = model(torch.randn(2, channels, 32, 32))
    assert y.shape == (2, 5)
    y.sum().backward()
    assert spec_of(model).name == name
    assert name in list_models(include_torchvision=True)
    with pytest.raises(ValueError, match="no width multiplier"):
        create(name, width=0.5)


def test_register_model_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", registry._REGISTRY.copy())

    @register_model("tiny-mlp", input_size=4)
    def tiny(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, hidden: int = 5) -> nn.Module:
        """A test model."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 16, hidden), nn.Linear(hidden, num_classes))

    m = create("Tiny_MLP", num_classes=3, in_channels=2, hidden=6)
    assert m(torch.randn(1, 2, 4, 4)).shape == (1, 3)
    assert spec_of(m).kwargs == {"num_classes": 3, "in_channels": 2, "width": 1.0, "hidden": 6}
    assert "tiny-mlp" in list_models() and registry.get_entry("tiny-mlp").description == "A test model."
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny-mlp")(tiny)
