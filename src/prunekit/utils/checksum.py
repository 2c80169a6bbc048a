"""SHA-256 digest of named tensors, as model files store it.

It hashes the values, not the file bytes, so it is checked on exactly what the loader returns. A tensor
contributes its key, dtype, shape and raw little-endian element bytes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

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
