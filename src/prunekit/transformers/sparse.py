"""Unstructured and N:M pruning of ``nn.Linear`` layers from calibration data: magnitude, Wanda, SparseGPT.

All three run through the block-by-block calibration engine (prunekit.transformers.calibration) and prune
each block as soon as its statistics are complete, so later blocks are calibrated on the outputs of the
already-pruned ones (sequential, as both papers do). Masks stay applied as parametrizations
(prunekit.surgery.masks): masked weights remain exactly zero through fine-tuning.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from prunekit.config import Config
from prunekit.surgery.masks import apply_masks, nm_mask, weight_param

from .calibration import BlockRecord, LinearStats, find_blocks, run_blocks

SCOPES = ("row", "layer")


def parse_nm(nm: str | None) -> tuple[int, int] | None:
    """"2:4" -> (2, 4): keep N of every M consecutive input weights; None stays None."""
    if nm is None:
        return None
    try:
        n, m = (int(v) for v in str(nm).split(":"))
    except ValueError as e:
        raise ValueError(f"nm={nm!r}: expected 'N:M' with integers, e.g. '2:4'") from e
    if not 0 < n < m:
        raise ValueError(f"nm={nm!r}: need 0 < N < M")
    return n, m


@dataclass
class SparseConfig(Config):
    """Options shared by the three unstructured methods.

    Attributes:
        sparsity: fraction of each selected layer's weights set to zero; None means 0.5, or 1 - N/M with
            ``nm`` (which fixes it: another value raises).
        nm: ``"N:M"`` keeps N of every M consecutive weights along the input dimension (e.g. ``"2:4"``).
        include: substrings; a Linear is pruned when its qualified name contains one (empty: all Linears of
            the model's block list, or all Linears when it has none).
        exclude: substrings of names never pruned.
    """

    sparsity: float | None = None
    nm: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pattern = parse_nm(self.nm)
        if pattern is not None:
            fixed = 1 - pattern[0] / pattern[1]
            if self.sparsity is not None and abs(self.sparsity - fixed) > 1e-9:
                raise ValueError(f"sparsity={self.sparsity} contradicts nm={self.nm!r} (which prunes {fixed:g})")
            self.sparsity = fixed
        elif self.sparsity is None:
            self.sparsity = 0.5
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must lie in [0, 1), got {self.sparsity}")
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)

    @property
    def pattern(self) -> tuple[int, int] | None:
        return parse_nm(self.nm)


@dataclass
class _ScopedConfig(SparseConfig):
    """A sparse config whose scores are ranked per ``scope``: "layer" (all weights of a layer) or "row"."""

    scope: str = "row"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r}; valid: {', '.join(SCOPES)}")


@dataclass
class MagnitudeConfig(_ScopedConfig):
    """Magnitude baseline; ``scope`` "layer" ranks all weights of a layer, "row" each output row."""

    scope: str = "layer"


@dataclass
class WandaConfig(_ScopedConfig):
    """Wanda (Sun et al. 2024): score |W_ij| * ||X_j||_2, lowest removed per output row (or per N:M group)."""


@dataclass
class SparseGPTConfig(SparseConfig):
    """SparseGPT (Frantar & Alistarh 2023).

    Attributes:
        damp: damping lambda as a fraction of the mean Hessian diagonal, added to the diagonal.
        block_size: columns per lazy-update block; the unstructured mask is chosen adaptively per block
            (a multiple of M for N:M).
    """

    damp: float = 0.01
    block_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.damp <= 0:
            raise ValueError(f"damp must be positive, got {self.damp}")
        if self.block_size <= 0:
            raise ValueError(f"block_size must be positive, got {self.block_size}")
        pattern = self.pattern
        if pattern is not None and self.block_size % pattern[1]:
            raise ValueError(f"block_size={self.block_size} must be a multiple of M={pattern[1]} for nm={self.nm!r}")


@dataclass
class SparseReport:
    """Outcome of one unstructured run: per-layer and overall sparsity of the pruned Linears."""

    method: str
    config: dict[str, Any]
    layers: dict[str, float] = field(default_factory=dict)
    sparsity: float = 0.0
    calibration_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lowest(scores: torch.Tensor, k: int, dim: int | None) -> torch.Tensor:
    """Bool mask (True = prune) of the k lowest scores per row (dim=1) or over the whole tensor (None);
    a stable sort breaks ties by position."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k <= 0:
        return mask
    if dim is None:
        idx = scores.flatten().argsort(stable=True)[:k]
        mask.view(-1)[idx] = True
        return mask
    idx = scores.argsort(dim=1, stable=True)[:, :k]
    return mask.scatter_(1, idx, True)


def score_mask(scores: torch.Tensor, cfg: SparseConfig, scope: str) -> torch.Tensor:
    """Keep-mask (True = keep) from per-weight scores: N:M per group, else the sparsity per row or layer."""
    pattern = cfg.pattern
    if pattern is not None:
        return nm_mask(scores, pattern[0], pattern[1], scores=scores)
    if scope == "row":
        return ~_lowest(scores, int(scores.shape[1] * cfg.sparsity), 1)
    return ~_lowest(scores, int(scores.numel() * cfg.sparsity), None)


def sparsegpt_weight(weight: torch.Tensor, hessian: torch.Tensor, cfg: SparseGPTConfig,
                     name: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one weight [out, in] with its Hessian H = 2 X^T X / n: (updated weight, keep-mask).

    Columns are processed left to right in blocks; a pruned weight's error is spread over the remaining
    columns by the OBS update through the upper Cholesky factor of H^-1, within a block at once per column and
    to later blocks lazily per block. The factorisation runs in float64, the updates in float32.
    """
    W = weight.detach().to(torch.float32).clone()
    H = hessian.detach().to(torch.float64).clone()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H.diagonal().add_(cfg.damp * torch.diag(H).mean())
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    except torch.linalg.LinAlgError as e:
        raise RuntimeError(f"SparseGPT {name}: the damped Hessian is not positive definite; raise damp "
                           f"(now {cfg.damp})") from e
    pruned = torch.zeros_like(W, dtype=torch.bool)
    pattern = cfg.pattern
    for i1 in range(0, cols, cfg.block_size):
        i2 = min(i1 + cfg.block_size, cols)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        d = torch.diag(U1)
        err1 = torch.zeros_like(W1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        if pattern is None:
            mask1 = _lowest(W1.square() / d.square(), int(W1.numel() * cfg.sparsity), None)
        for i in range(i2 - i1):
            if pattern is not None and i % pattern[1] == 0:
                n, m = pattern
                tmp = W1[:, i:i + m].square() / d[i:i + m].square()
                mask1[:, i:i + m] = _lowest(tmp, m - n, 1)
            w = W1[:, i]
            q = torch.where(mask1[:, i], torch.zeros_like(w), w)
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            W1[:, i] = q
            err1[:, i] = err
        W[:, i1:i2] = W1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= err1 @ U[i1:i2, i2:]
    return W.to(weight.dtype), ~pruned


def layer_filter(model: nn.Module, cfg: SparseConfig):
    """The Linears a config selects: inside the block list by default, narrowed by include / exclude."""
    found = find_blocks(model)
    inside = None if found is None or cfg.include else found[0] + "."

    def fn(module: nn.Module, name: str) -> bool:
        if not isinstance(module, nn.Linear):
            return False
        if inside is not None and not name.startswith(inside):
            return False
        if cfg.include and not any(s in name for s in cfg.include):
            return False
        return not any(s in name for s in cfg.exclude)
    return fn


def _check_nm(model: nn.Module, cfg: SparseConfig, fn) -> None:
    pattern = cfg.pattern
    if pattern is None:
        return
    bad = [n for n, m in model.named_modules() if fn(m, n) and m.in_features % pattern[1]]
    if bad:
        raise ValueError(f"nm={cfg.nm!r}: in_features not divisible by {pattern[1]} in {', '.join(bad)}; "
                         "exclude them")


def _prune_layer(method: str, module: nn.Module, st: LinearStats, cfg: SparseConfig, name: str) -> torch.Tensor:
    w = weight_param(module).detach()
    if method == "magnitude":
        return score_mask(w.abs(), cfg, cfg.scope)
    if method == "wanda":
        return score_mask(w.abs() * st.col_norm.to(w.device, w.dtype).unsqueeze(0), cfg, cfg.scope)
    new_w, keep = sparsegpt_weight(w, st.hessian_matrix(), cfg, name)
    with torch.no_grad():
        weight_param(module).copy_(new_w.to(w.device))
    return keep.to(w.device)


_CONFIGS = {"magnitude": MagnitudeConfig, "wanda": WandaConfig, "sparsegpt": SparseGPTConfig}


def prune_sparse(model: nn.Module, batches: Sequence[Any], method: str = "wanda",
                 config: SparseConfig | None = None, **options: Any) -> SparseReport:
    """Prune the Linears of ``model`` in place with ``method`` ("magnitude", "wanda" or "sparsegpt").

    Args:
        model: any nn.Module (HF encoder or decoder, or not HF at all).
        batches: calibration batches (see run_blocks); magnitude ignores their values but runs the same pass.
        method: the criterion.
        config: the method's config (MagnitudeConfig, WandaConfig, SparseGPTConfig); or give its fields as
            ``options`` (unknown ones raise TypeError).

    Returns:
        SparseReport with the sparsity of each pruned layer.

    Example:
        >>> prune_sparse(model, batches, "sparsegpt", sparsity=0.5)   # or nm="2:4"
    """
    if method not in _CONFIGS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(_CONFIGS)}")
    config = _CONFIGS[method].resolve(f"prune_sparse({method!r})", config, options)
    fn = layer_filter(model, config)
    _check_nm(model, config, fn)
    report = SparseReport(method, {"method": method, **config.to_dict()})
    start = time.perf_counter()

    def on_block(rec: BlockRecord) -> None:
        masks = {}
        for name, st in rec.stats.items():
            module = model.get_submodule(name)
            masks[f"{name}.weight"] = _prune_layer(method, module, st, config, name)
            report.calibration_tokens = max(report.calibration_tokens, st.tokens)
        apply_masks(model, masks)
        for key, mask in masks.items():
            report.layers[key] = 1.0 - float(mask.float().mean())

    stats = run_blocks(model, batches, hessian=method == "sparsegpt", filter_fn=fn, on_block=on_block)
    outside = {n: st for n, st in stats.items() if f"{n}.weight" not in report.layers}
    if outside:  # selected Linears outside the block list: calibrated by a dense full forward, pruned last
        on_block(BlockRecord(-1, "", model, outside, []))
    total = sum(model.get_submodule(k[:-7]).weight.numel() for k in report.layers)
    zeros = sum(report.layers[k] * model.get_submodule(k[:-7]).weight.numel() for k in report.layers)
    report.sparsity = zeros / total if total else 0.0
    report.seconds = time.perf_counter() - start
    return report


__all__ = ["MagnitudeConfig", "SparseConfig", "SparseGPTConfig", "SparseReport", "WandaConfig", "parse_nm",
           "prune_sparse", "score_mask", "sparsegpt_weight"]
