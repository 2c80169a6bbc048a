"""Folding BatchNorm into the convolution before it, so int8 sees one fused weight per channel (the folding
itself is prunekit.surgery.inference's; here its errors become QuantizeErrors)."""
from __future__ import annotations

from torch import nn

from ..surgery import inference
from .config import QuantizeError


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold, in place, every BatchNorm that directly follows a convolution (or Linear); the norm becomes
    nn.Identity. The model must be in eval mode (the running statistics are folded). Returns the folded pairs.

    Example:
        >>> pairs = fold_batchnorm(model.eval())
    """
    try:
        return inference.fold_batchnorm(model)
    except inference.InferenceError as e:
        raise QuantizeError(str(e)) from e
