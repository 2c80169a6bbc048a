"""The model registry: every model is built from (name, JSON-able kwargs), so a pruned model can be
saved as that pair plus its plan and rebuilt without pickle."""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..registry import Registry
from .entry import TORCHVISION_PREFIX, ModelEntry
from .tv import torchvision_entry, torchvision_names

SPEC_ATTR = "_prunekit_spec"


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a model: its registry name and the keyword arguments given to `create`."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        return cls(str(d["name"]), dict(d.get("kwargs", {})))

    def build(self) -> nn.Module:
        """A fresh, randomly initialised model of this architecture."""
        return create(self.name, **self.kwargs)


_REGISTRY: Registry = Registry("model")


def register_model(name: str | None = None, input_size: int = 32,
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory under `name` (default: the function's name)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = (name or factory.__name__).strip().lower()
        if key in _REGISTRY or key.startswith(TORCHVISION_PREFIX):
            raise ValueError(f"model name {key!r} is already registered or reserved")
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY.register(key, ModelEntry(key, factory, input_size, doc[0] if doc else ""))
        return factory

    return wrap


def list_models(include_torchvision: bool = False) -> list[str]:
    """Registered model names, sorted; with include_torchvision, also every `torchvision:<name>`."""
    names = _REGISTRY.names()
    if include_torchvision:
        names += [TORCHVISION_PREFIX + n for n in torchvision_names()]
    return names


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; valid: {', '.join(_REGISTRY.names())}, "
                      f"or {TORCHVISION_PREFIX}<name> for any torchvision classification model")


def get_entry(name: str) -> ModelEntry:
    """The registry entry of a name (torchvision:<name> included)."""
    if name.strip().lower().startswith(TORCHVISION_PREFIX):
        return torchvision_entry(name.strip()[len(TORCHVISION_PREFIX):])
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def default_input_size(name: str) -> int:
    """Image side the model is designed for (28 for LeNets, 32 for CIFAR models, 224 torchvision)."""
    return get_entry(name).input_size


def create(name: str, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, **kw: Any) -> nn.Module:
    """Build a registered model; the result carries its ModelSpec (see `spec_of`)."""
    entry = get_entry(name)
    kwargs = {"num_classes": int(num_classes), "in_channels": int(in_channels), "width": float(width), **kw}
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise TypeError(f"model kwargs must be JSON-serialisable to be saved and rebuilt: {e}") from e
    params = inspect.signature(entry.factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        extra = sorted(set(kwargs) - set(params))
        if extra:
            raise TypeError(f"model {entry.name!r} takes no argument(s) {extra}; it takes {sorted(params)}")
    model = entry.factory(**kwargs)
    object.__setattr__(model, SPEC_ATTR, ModelSpec(entry.name, kwargs))
    return model


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The ModelSpec a model was created with (None for models not built by `create`)."""
    return getattr(model, SPEC_ATTR, None)


def scaled(channels: int, width: float) -> int:
    """Channel count times a width multiplier, at least 1."""
    return max(1, int(round(channels * width)))
