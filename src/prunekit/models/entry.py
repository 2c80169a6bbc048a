"""What the model registry stores for one name (kept apart so that `tv` and `registry` share it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class ModelEntry:
    """One registered factory: `factory(num_classes=, in_channels=, width=, **kw) -> nn.Module`."""

    name: str
    factory: Callable[..., nn.Module]
    input_size: int  # the side of the images the model is designed for (example inputs, `info`)
    description: str = ""
