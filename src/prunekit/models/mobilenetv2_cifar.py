"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: stride-1 stem and second stage, so 32x32 inputs
end at 4x4; width multiplier with channels rounded to multiples of 8."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

# expansion t, output channels c, repeats n, first stride s
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of divisor, never below 90% of v (MobileNet convention)."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> BN -> ReLU6 (no activation when act=False)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out)]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; identity residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = ConvBNReLU(c_in, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNReLU(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNReLU(hidden, c_out, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class CifarMobileNetV2(nn.Module):
    """stem -> 17 inverted residual blocks -> 1x1 conv to 1280 -> global average pool -> dropout -> fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        c = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        blocks: list[nn.Module] = [ConvBNReLU(in_channels, c, 3, 1)]
        for t, ch, n, s in SETTINGS:
            out = make_divisible(ch * width)
            for i in range(n):
                blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        blocks.append(ConvBNReLU(c, last, 1))
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.avgpool(self.features(x)))))


@register_model("mobilenetv2", input_size=32)
def mobilenetv2(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                dropout: float = 0.2) -> CifarMobileNetV2:
    """MobileNetV2 for CIFAR-sized images, width multiplier `width`."""
    return CifarMobileNetV2(num_classes, in_channels, width, dropout)
