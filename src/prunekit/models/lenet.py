"""LeNet-300-100 (fully connected) and LeNet-5 (two convolutions), for 28x28 inputs by default."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model, scaled


def _pair(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class LeNet300(nn.Module):
    """Flatten -> 300 -> 100 -> classes, ReLU between."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
                 input_size: int | tuple[int, int] = 28) -> None:
        super().__init__()
        h, w = _pair(input_size)
        h1, h2 = scaled(300, width), scaled(100, width)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_channels * h * w, h1)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(self.flatten(x))))))


class LeNet5(nn.Module):
    """conv5x5(6, pad 2) -> pool -> conv5x5(16) -> pool -> 120 -> 84 -> classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
                 input_size: int | tuple[int, int] = 28) -> None:
        super().__init__()
        h, w = _pair(input_size)
        c1, c2, f1, f2 = scaled(6, width), scaled(16, width), scaled(120, width), scaled(84, width)
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ValueError(f"LeNet-5 needs inputs of at least 10x10, got {h}x{w}")
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * fh * fw, f1)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(f1, f2)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.flatten(self.pool2(self.relu2(self.conv2(x))))
        return self.fc3(self.relu4(self.fc2(self.relu3(self.fc1(x)))))


@register_model("lenet300", input_size=28)
def lenet300(num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
             input_size: int | list[int] = 28) -> LeNet300:
    """LeNet-300-100: a 3-layer perceptron on flattened in_channels x input_size x input_size images."""
    return LeNet300(num_classes, in_channels, width, _pair(input_size))


@register_model("lenet5", input_size=28)
def lenet5(num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
           input_size: int | list[int] = 28) -> LeNet5:
    """LeNet-5: two 5x5 convolutions with max pooling, then 120-84-classes."""
    return LeNet5(num_classes, in_channels, width, _pair(input_size))
