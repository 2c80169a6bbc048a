"""Depth pruning, ShortGPT-like (Men et al. 2024): remove the blocks that change their input least.

Block influence BI_i = 1 - mean over calibration tokens of cos(h_in, h_out) of block i, measured on the
dense model in one block-by-block pass (prunekit.transformers.calibration). The ``remove`` blocks with the
lowest BI leave the block list; an HF config's ``num_hidden_layers`` (and per-layer lists such as
``layer_types``) follow, and the remaining attention modules are renumbered (``layer_idx``) for the cache.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import Config
from .calibration import find_blocks, run_blocks


@dataclass
class DepthConfig(Config):
    """Options of depth pruning.

    Attributes:
        remove: number of blocks to remove.
        keep_first, keep_last: never remove the first / last block (the papers' observation: they matter).
    """

    remove: int = 1
    keep_first: bool = False
    keep_last: bool = False

    def __post_init__(self) -> None:
        if self.remove < 0:
            raise ValueError(f"remove must be >= 0, got {self.remove}")


@dataclass
class DepthReport:
    """Block influences (index = original block position) and the blocks removed."""

    config: dict[str, Any]
    influence: list[float] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    blocks_before: int = 0
    blocks_after: int = 0
    config_updates: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _token_mask(batch: Any, hidden: torch.Tensor) -> torch.Tensor | None:
    """The batch's attention_mask when it covers the hidden states' [batch, seq] (padding excluded)."""
    if isinstance(batch, dict) and isinstance(batch.get("attention_mask"), torch.Tensor):
        mask = batch["attention_mask"]
        if tuple(mask.shape) == tuple(hidden.shape[:2]):
            return mask.to(hidden.device).bool()
    return None


def block_influence(model: nn.Module, batches: Sequence[Any]) -> list[float]:
    """BI of every block of the model's block list: 1 - mean cosine(block input, block output) per token."""
    if find_blocks(model) is None:
        raise ValueError(f"{type(model).__name__}: no block list (nn.ModuleList of identical blocks) found")
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}

    def on_output(i: int, hin: list[torch.Tensor], hout: list[torch.Tensor]) -> None:
        for batch, a, b in zip(batches, hin, hout):
            cos = F.cosine_similarity(a.double(), b.double(), dim=-1)
            mask = _token_mask(batch, a)
            cos = cos[mask] if mask is not None else cos.reshape(-1)
            sums[i] = sums.get(i, 0.0) + float(cos.sum())
            counts[i] = counts.get(i, 0) + cos.numel()

    run_blocks(model, batches, filter_fn=lambda _m, _n: False, on_output=on_output)
    return [1.0 - sums[i] / max(counts[i], 1) for i in sorted(sums)]


def remove_blocks(model: nn.Module, indices: Sequence[int]) -> dict[str, Any]:
    """Drop the blocks at ``indices`` from the model's block list (in place); update an HF config's
    ``num_hidden_layers`` / ``n_layer`` / ``num_layers`` and per-layer lists, renumber ``layer_idx``.
    Returns the config fields changed."""
    found = find_blocks(model)
    if found is None:
        raise ValueError(f"{type(model).__name__}: no block list (nn.ModuleList of identical blocks) found")
    name, blist = found
    n = len(blist)
    drop = sorted(set(int(i) for i in indices))
    if any(not 0 <= i < n for i in drop):
        raise IndexError(f"block indices {drop} out of range for {n} blocks in {name}")
    if len(drop) >= n:
        raise ValueError(f"cannot remove all {n} blocks of {name}")
    keep = [i for i in range(n) if i not in drop]
    new = nn.ModuleList([blist[i] for i in keep])
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    for pos, block in enumerate(new):
        for mod in block.modules():
            if isinstance(getattr(mod, "layer_idx", None), int) and not isinstance(mod.layer_idx, bool):
                mod.layer_idx = pos
    return _update_config(model, n, keep)


def _update_config(model: nn.Module, n: int, keep: list[int]) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    changed: dict[str, Any] = {}
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if getattr(cfg, key, None) == n:
            setattr(cfg, key, len(keep))
            changed[key] = len(keep)
    for key in ("layer_types",):
        value = getattr(cfg, key, None)
        if isinstance(value, list) and len(value) == n:
            setattr(cfg, key, [value[i] for i in keep])
            changed[key] = getattr(cfg, key)
    return changed


def prune_depth(model: nn.Module, batches: Sequence[Any], config: DepthConfig | None = None,
                **options: Any) -> DepthReport:
    """Remove the ``remove`` least influential blocks of ``model`` (in place).

    Args:
        model: a model with a block list (find_blocks).
        batches: calibration batches.
        config: a DepthConfig, or its fields as keywords (unknown ones raise TypeError).

    Returns:
        DepthReport with every block's influence and the removed indices (ties: the earlier block goes).

    Example:
        >>> prune_depth(model, batches, remove=2)
    """
    config = DepthConfig.resolve("prune_depth()", config, options)
    start = time.perf_counter()
    bi = block_influence(model, batches)
    candidates = [i for i in range(len(bi)) if not (config.keep_first and i == 0)
                  and not (config.keep_last and i == len(bi) - 1)]
    if config.remove > len(candidates) or config.remove >= len(bi):
        raise ValueError(f"remove={config.remove} but only {min(len(candidates), len(bi) - 1)} of {len(bi)} "
                         "blocks may go")
    removed = sorted(sorted(candidates, key=lambda i: (bi[i], i))[:config.remove])
    report = DepthReport(asdict(config), bi, removed, len(bi), len(bi) - len(removed))
    report.config_updates = remove_blocks(model, removed) if removed else {}
    report.seconds = time.perf_counter() - start
    return report


__all__ = ["DepthConfig", "DepthReport", "block_influence", "prune_depth", "remove_blocks"]
