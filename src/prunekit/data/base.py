"""Shared pieces of the data package: errors, dataset description, the in-memory image dataset,
tensor augmentation and the seeded splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import Dataset


class DataError(RuntimeError):
    """Base class of every data error raised by prunekit."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set could not be found in any of the places searched (the message names each)."""


class DataFormatError(DataError, ValueError):
    """A data file exists but is corrupt, truncated or not in the expected format."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (height, width) of the tensors the loaders yield
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        return (self.in_channels, *self.image_size)


def random_crop_flip(x: torch.Tensor, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly crop every image of a batch [B, C, H, W] from a zero-padded copy and flip half of them
    horizontally; works on any dtype, keeps the shape."""
    b, c, h, w = x.shape
    if padding > 0:
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # [B,1,H,1]
        cols = (ox[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # [B,1,1,W]
        x = padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def prepare_batch(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, augment: bool = False,
                  padding: int = 4, flip: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B, C, H, W] -> normalised float32, randomly cropped and flipped first (drawing from
    `generator`) when augment."""
    if augment:
        x = random_crop_flip(x, padding, flip, generator=generator)
    return (x.float().div_(255.0) - mean) / std


class BatchedImageDataset(Dataset):
    """A split (`indices`) of a labelled image source whose samples are normalised, and optionally
    augmented, on the fly. `__getitems__` serves a whole batch at once (see `collate_batched`).

    Augmentation draws from the dataset's own `generator` (seeded with `seed`), never from torch's global
    generator, so the same seed gives the same crops and flips whatever else ran; DataLoader workers reseed
    their copy from their worker seed (see `data.api.make_loader`)."""

    labels: torch.Tensor  # int64 labels of the whole source

    def __init__(self, mean: Sequence[float], std: Sequence[float], indices: torch.Tensor,
                 augment: bool = False, classes: Sequence[str] = (), padding: int = 4,
                 flip: bool = True, seed: int = 0) -> None:
        c = len(mean)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, c, 1, 1)
        self.indices = indices.long()
        self.augment = augment
        self.padding = padding
        self.flip = flip
        self.classes = tuple(classes)
        self.generator = torch.Generator().manual_seed(int(seed))

    def raw(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 images [B, C, H, W] at source indices idx."""
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def targets(self) -> torch.Tensor:
        """Labels of this split, in order."""
        return self.labels[self.indices]

    def batch(self, positions: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images [B, C, H, W] and int64 labels [B] for positions in this split."""
        idx = self.indices[torch.as_tensor(positions, dtype=torch.long)]
        x = prepare_batch(self.raw(idx), self.mean, self.std, self.augment, self.padding, self.flip,
                          generator=self.generator)
        return x, self.labels[idx]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        x, y = self.batch([i])
        return x[0], int(y[0])

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(positions)


class TensorImageDataset(BatchedImageDataset):
    """Images held once as a uint8 tensor [N, C, H, W] (MNIST-like data, CIFAR, digits): no PIL."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float],
                 std: Sequence[float], indices: torch.Tensor | None = None, **kw) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need {images.shape[1]} values, got {len(mean)}/{len(std)}")
        super().__init__(mean, std, torch.arange(images.shape[0]) if indices is None else indices, **kw)
        self.images = images
        self.labels = labels.long()

    def raw(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]


def collate_batched(batch):
    """collate_fn for datasets whose `__getitems__` already returns a batch (pass it through)."""
    return batch


def resolve_size(size: int | float | None, total: int, default: int | float, what: str) -> int:
    """An absolute count from an int count or a float fraction of `total`."""
    size = default if size is None else size
    n = int(round(size * total)) if isinstance(size, float) else int(size)
    if not 0 <= n < total:
        raise ValueError(f"{what}={size} must leave samples out of {total}")
    return n


def seeded_split(n: int, held_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) into (kept, held_out) index tensors, both sorted, from a seeded permutation."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[held_out:].sort().values, perm[:held_out].sort().values


def take_subset(indices: torch.Tensor, subset: int | None, seed: int) -> torch.Tensor:
    """A seeded random subset of `subset` indices (all of them when subset is None or too large)."""
    if subset is None or subset >= indices.numel():
        return indices
    if subset <= 0:
        raise ValueError(f"subset must be positive, got {subset}")
    perm = torch.randperm(indices.numel(), generator=torch.Generator().manual_seed(seed + 1))
    return indices[perm[:subset].sort().values]
