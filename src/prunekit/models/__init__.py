"""The model zoo: one registry, `create(name, num_classes, in_channels, width, **kw)`, `list_models()`.

Registered: lenet300, lenet5, resnet20/32/56/110, vgg11/16/19 (BN), mobilenetv2 (CIFAR variants),
and `torchvision:<name>` for any torchvision classification model."""
from . import lenet, mobilenetv2_cifar, resnet_cifar, vgg_cifar  # noqa: F401  (registers the models)
from .lenet import LeNet5, LeNet300
from .mobilenetv2_cifar import CifarMobileNetV2
from .entry import ModelEntry
from .registry import ModelSpec, create, default_input_size, get_entry, list_models, register_model, spec_of
from .resnet_cifar import BasicBlock, CifarResNet
from .vgg_cifar import CifarVGG

__all__ = [
    "ModelEntry", "ModelSpec", "create", "default_input_size", "get_entry", "list_models", "register_model",
    "spec_of", "LeNet5", "LeNet300", "CifarMobileNetV2", "BasicBlock", "CifarResNet", "CifarVGG",
]
