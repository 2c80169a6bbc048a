"""scikit-learn's 8x8 digits (1,797 samples, shipped with the package): the always-there fallback."""
from __future__ import annotations

import functools

import torch

CLASSES = tuple(str(i) for i in range(10))
TEST_SIZE = 297  # fixed held-out test part, same for every seed
TEST_SEED = 20240601
MEAN, STD = (0.3053,), (0.3759,)  # of all pixels scaled to [0, 1]


@functools.lru_cache(maxsize=1)
def load_all() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [1797, 1, 8, 8] (0..16 scaled to 0..255) and int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a declared dependency extra
        raise ImportError("the digits data set needs scikit-learn: pip install 'prunekit[data]'") from e
    d = load_digits()
    x = torch.from_numpy(d.images).float().mul(255.0 / 16.0).round().clamp(0, 255).to(torch.uint8)
    return x.unsqueeze(1).contiguous(), torch.from_numpy(d.target).long()
