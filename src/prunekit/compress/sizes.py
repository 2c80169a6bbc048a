"""Byte sizes of a model at each Deep Compression stage (dense, pruned sparse, quantized).

The Huffman stage is not estimated: it is the size of the file :func:`prunekit.compress.save_compressed`
writes. The other stages follow Han et al. (2016): a sparse weight is stored as its value plus the gap to
the previous non-zero in ``index_bits`` bits; a gap that does not fit costs a filler zero entry every
``2**index_bits`` positions. Tensors that are not selected (biases, norms) count as dense float32.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunekit.compress.sharing import codebooks, plain_state_dict
from prunekit.surgery.masks import FilterFn, per_layer, target_layers

DEFAULT_INDEX_BITS: dict[str, int] = {"conv": 8, "linear": 5}


@dataclass
class StageSize:
    stage: str
    bytes: int
    ratio: float          # dense float32 bytes / bytes
    accuracy: float | None = None


def relative_gaps(mask: torch.Tensor) -> np.ndarray:
    """Zeros skipped before each non-zero of the flattened (row-major) ``mask``."""
    pos = torch.nonzero(mask.reshape(-1)).reshape(-1).cpu().numpy().astype(np.int64)
    return np.diff(pos, prepend=-1) - 1


def filler_count(gaps: np.ndarray, index_bits: int) -> int:
    """Filler zeros needed when a gap must fit in ``index_bits`` bits (one per ``2**index_bits`` skipped)."""
    return int((np.asarray(gaps, dtype=np.int64) >> index_bits).sum())


def dense_bytes(model: nn.Module) -> int:
    """4 bytes per floating-point entry of the (plain) state dict: the dense float32 reference."""
    return 4 * sum(v.numel() for v in plain_state_dict(model).values() if v.is_floating_point())


def _stage_bytes(model: nn.Module, index_bits: int | Mapping[str, int], filter_fn: FilterFn | None,
                 quantized: bool) -> int:
    sd = plain_state_dict(model)
    ib = per_layer(model, index_bits, filter_fn, default=DEFAULT_INDEX_BITS.get("linear"))
    shared = codebooks(model) if quantized else {}
    selected = dict(target_layers(model, filter_fn))
    total = 0
    for key, v in sd.items():
        if not v.is_floating_point():
            continue
        if key not in selected:
            total += 4 * v.numel()
            continue
        bits = int(ib[key])
        gaps = relative_gaps(v != 0)
        entries = gaps.size + filler_count(gaps, bits)
        if key in shared:
            k = shared[key].codebook.numel()
            nbits = entries * (max(1, math.ceil(math.log2(k))) + bits) + 32 * k
        else:
            nbits = entries * (32 + bits)
        total += math.ceil(nbits / 8)
    return total


def sparse_bytes(model: nn.Module, index_bits: int | Mapping[str, int] = DEFAULT_INDEX_BITS,
                 filter_fn: FilterFn | None = None) -> int:
    """Pruned stage: float32 values + relative indices of the selected weights (CSR-like)."""
    return _stage_bytes(model, index_bits, filter_fn, quantized=False)


def quantized_bytes(model: nn.Module, index_bits: int | Mapping[str, int] = DEFAULT_INDEX_BITS,
                    filter_fn: FilterFn | None = None) -> int:
    """Quantized stage: float32 codebook + ``ceil(log2 k)``-bit cluster index + relative index per entry
    for layers that share weights (others as in :func:`sparse_bytes`)."""
    return _stage_bytes(model, index_bits, filter_fn, quantized=True)
