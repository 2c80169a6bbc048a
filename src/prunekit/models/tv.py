"""`torchvision:<name>`: any torchvision classification model, randomly initialised (weights=None),
with its classifier sized to num_classes and its first convolution to in_channels."""
from __future__ import annotations

import functools
from typing import Any

from torch import nn

from .entry import TORCHVISION_PREFIX, ModelEntry

_INPUT_SIZES = {"inception_v3": 299}


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """Classification models torchvision can build."""
    import torchvision.models as tvm
    return tuple(sorted(tvm.list_models(module=tvm)))


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for one with in_channels inputs (same other settings, fresh weights)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels == in_channels:
                return
            if m.groups != 1:
                raise ValueError(f"cannot change the input channels of grouped conv {name!r}")
            new = nn.Conv2d(in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            1, m.bias is not None, m.padding_mode)
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
            return
    raise ValueError("no Conv2d found to take the input channels")


def torchvision_entry(name: str) -> ModelEntry:
    """A registry entry building torchvision model `name`."""
    if name not in torchvision_names():
        raise ValueError(f"unknown torchvision model {name!r}; valid: {', '.join(torchvision_names())}")

    def build(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, **kw: Any) -> nn.Module:
        import torchvision.models as tvm
        if width != 1.0:
            raise ValueError(f"torchvision models take no width multiplier (got width={width})")
        if name in ("inception_v3", "googlenet"):  # plain logits, and no init warning
            kw.setdefault("aux_logits", False)
            kw.setdefault("init_weights", True)
        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kw)
        if in_channels != 3:
            _replace_first_conv(model, in_channels)
        return model

    build.__doc__ = f"torchvision {name}, randomly initialised."
    return ModelEntry(TORCHVISION_PREFIX + name, build, _INPUT_SIZES.get(name, 224), build.__doc__)
