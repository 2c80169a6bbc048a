"""CIFAR-style ResNets (He et al. 2016, section 4.2): 6n+2 layers in three stages of 16/32/64 channels,
BasicBlocks, 1x1 conv + BN projection shortcuts where the shape changes (option B, so they prune)."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model, scaled


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3 -> layer1..3 (n blocks each, strides 1, 2, 2) -> global average pool -> fc."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        in_planes = widths[0]
        stages = []
        for planes, stride in zip(widths, (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def _factory(depth: int):
    def build(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels, width)

    build.__doc__ = f"ResNet-{depth} for CIFAR-sized images ({(depth - 2) // 6} blocks per stage)."
    build.__name__ = f"resnet{depth}"
    return build


for _depth in (20, 32, 56, 110):
    register_model(f"resnet{_depth}", input_size=32)(_factory(_depth))
