"""VGG-11/16/19 with BatchNorm, CIFAR variant: conv3x3-BN-ReLU stacks, five 2x2 max pools (ceil mode,
so 28x28 inputs work too), global average pooling and one linear classifier."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model, scaled

CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class CifarVGG(nn.Module):
    """`features` (Sequential of Conv/BN/ReLU/MaxPool) -> avgpool -> flatten -> classifier."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                out = scaled(int(v), width)
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def _factory(depth: int):
    def build(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> CifarVGG:
        return CifarVGG(depth, num_classes, in_channels, width)

    build.__doc__ = f"VGG-{depth} with BatchNorm for CIFAR-sized images."
    build.__name__ = f"vgg{depth}"
    return build


for _depth in sorted(CONFIGS):
    register_model(f"vgg{_depth}", input_size=32)(_factory(_depth))
