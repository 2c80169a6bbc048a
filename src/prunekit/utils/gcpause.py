"""Pausing Python's cyclic garbage collector while the engine builds its bookkeeping.

Tracing, planning and applying create hundreds of thousands of small, acyclic objects (per-channel index
lists, label arrays). Each burst of allocations triggers collections that walk every object the process
holds (torch, the model, a timm or transformers import: millions), which cost more than the work itself:
on torchvision's ResNet-50 at 224 they were a third of ``pk.plan``. Reference counting still frees every
acyclic object at once; cycles made meanwhile are collected on the next collection after the pause.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import threading
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class _PauseState:
    """Nesting across threads: the collector is re-enabled when the outermost pause ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False


_STATE = _PauseState()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; re-enable it afterwards if it was enabled before.

    Nested (and concurrent) pauses keep it off until the outermost one ends. A collector that the caller
    turned off stays off.

    Example:
        >>> with gc_paused():
        ...     graph = trace(model, x)  # doctest: +SKIP
    """
    with _STATE.lock:
        if _STATE.depth == 0:
            _STATE.was_enabled = gc.isenabled()
            gc.disable()
        _STATE.depth += 1
    try:
        yield
    finally:
        with _STATE.lock:
            _STATE.depth -= 1
            if _STATE.depth == 0 and _STATE.was_enabled:
                gc.enable()


def without_gc(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`gc_paused` (its signature and docstring are kept)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with gc_paused():
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
