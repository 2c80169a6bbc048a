"""SHA-256 digests of what prunekit files store: named tensors (models) and nested checkpoint objects.

Both hash the values, not the file bytes, so they can be checked on exactly what a loader returns. A
tensor contributes its dtype, shape and raw little-endian element bytes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch


def _update_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach()
    h.update(json.dumps([str(t.dtype), list(t.shape)]).encode())
    if t.numel():
        flat = t.cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().data)


def tensors_digest(tensors: Mapping[str, torch.Tensor], prefix: bytes = b"") -> str:
    """Hex SHA-256 of ``prefix`` followed by every tensor (in sorted key order): key, dtype, shape, bytes."""
    h = hashlib.sha256(prefix)
    for key in sorted(tensors):
        h.update(json.dumps(key).encode())
        _update_tensor(h, tensors[key])
    return h.hexdigest()


def _update(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        h.update(b"T")
        _update_tensor(h, obj)
    elif isinstance(obj, Mapping):
        h.update(b"d%d:" % len(obj))
        for k, v in obj.items():
            _update(h, k)
            _update(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(b"%s%d:" % (b"l" if isinstance(obj, list) else b"t", len(obj)))
        for v in obj:
            _update(h, v)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"b%d:" % len(obj) + bytes(obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    else:  # numbers, None, dtypes...: their exact repr, tagged with the type
        text = f"{type(obj).__qualname__}:{obj!r}".encode()
        h.update(b"o%d:" % len(text) + text)


def object_digest(obj: Any) -> str:
    """Hex SHA-256 of a nested structure of dicts (in order), lists, tuples, tensors and plain values."""
    h = hashlib.sha256()
    _update(h, obj)
    return h.hexdigest()
