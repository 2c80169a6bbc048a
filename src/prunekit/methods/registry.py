"""The method registry: every method is registered with the config dataclass it takes."""
from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry

METHODS: Registry = Registry("method")


def register_method(name: str, config: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn(model, train_loader, val_loader, example_inputs, config=None, **options)` as `name`."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        METHODS.register(name, fn, config=config)
        fn.config_type = config
        return fn

    return deco
