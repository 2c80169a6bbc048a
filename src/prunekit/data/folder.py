"""ImageFolder trees (root/<class>/<image>), read with torchvision.datasets.ImageFolder.

Layouts: root/train/ with root/test/ (or root/val/) as the test split, or a single tree root/<class>/,
whose test split is then carved with a fixed seed."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2 import functional as TF

from .base import BatchedImageDataset, DataFormatError, DataNotFoundError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
TEST_FRACTION = 0.2
TEST_SEED = 20240601


def split_roots(data_dir: str | Path | None) -> tuple[Path, Path | None]:
    """(train tree, test tree or None when the test split is carved from a single tree)."""
    if data_dir is None:
        raise DataNotFoundError("the imagefolder data set needs --data-dir (a folder of class folders)")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    if (root / "train").is_dir():
        for name in ("test", "val"):
            if (root / name).is_dir():
                return root / "train", root / name
        return root / "train", None
    return root, None


@functools.lru_cache(maxsize=8)
def tree(path: str) -> ImageFolder:
    """The ImageFolder of one tree (file list and class names, images are read lazily)."""
    try:
        return ImageFolder(path)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataNotFoundError(f"{path}: not an image folder tree root/<class>/<image> ({e})") from e


def _open(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataFormatError(f"{path}: unreadable image ({e})") from e


def first_image_size(path: str) -> tuple[int, int]:
    """(height, width) of the first image of a tree."""
    im = _open(tree(path).samples[0][0])
    return im.height, im.width


class FolderDataset(BatchedImageDataset):
    """A split of an ImageFolder tree; images are decoded per sample, resized to image_size, RGB."""

    def __init__(self, folder: ImageFolder, image_size: tuple[int, int], indices: torch.Tensor,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD, **kw) -> None:
        super().__init__(mean, std, indices, classes=folder.classes, **kw)
        self.folder = folder
        self.image_size = image_size
        self.labels = torch.tensor(folder.targets, dtype=torch.long)

    def raw(self, idx: torch.Tensor) -> torch.Tensor:
        out = []
        for i in idx.tolist():
            t = TF.pil_to_tensor(_open(self.folder.samples[i][0]))
            if tuple(t.shape[1:]) != self.image_size:
                t = TF.resize(t, list(self.image_size), antialias=True)
            out.append(t)
        return torch.stack(out)
