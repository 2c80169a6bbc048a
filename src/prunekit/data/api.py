"""One entry point for every data set: `get_dataset`, `get_loaders`, `dataset_info`, `list_datasets`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import cifar, digits, fashion_mnist, folder
from .text import TEXT_DATASETS, load_text  # noqa: F401 - text sets (fortunes, .txt folders): prunekit.data.text
from .base import (BatchedImageDataset, DataFormatError, DatasetInfo, TensorImageDataset, collate_batched,
                   resolve_size, seeded_split, take_subset)

DATASETS = ("fashion-mnist", "digits", "cifar10", "imagefolder")
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "image-folder": "imagefolder", "folder": "imagefolder"}
_DEFAULT_VAL: dict[str, int | float] = {"fashion-mnist": 5000, "cifar10": 5000, "digits": 300,
                                        "imagefolder": 0.1}
_FIXED_INFO = {
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, (28, 28), fashion_mnist.MEAN, fashion_mnist.STD,
                                 fashion_mnist.CLASSES),
    "digits": DatasetInfo("digits", 10, 1, (8, 8), digits.MEAN, digits.STD, digits.CLASSES),
    "cifar10": DatasetInfo("cifar10", 10, 3, (32, 32), cifar.MEAN, cifar.STD, cifar.CLASSES),
}
Size = int | tuple[int, int] | None


def list_datasets() -> list[str]:
    """Names accepted by get_dataset (aliases aside)."""
    return list(DATASETS)


def canonical_name(name: str) -> str:
    """The registered name of a data set, or a ValueError listing the valid ones."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in TEXT_DATASETS:
        raise ValueError(f"{name!r} is a text data set: load it with prunekit.data.load_text (image sets: "
                         f"{', '.join(DATASETS)})")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return key


def _pair(size: Size) -> tuple[int, int] | None:
    return None if size is None else (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def dataset_info(name: str, data_dir: str | Path | None = None, image_size: Size = None) -> DatasetInfo:
    """Classes, channels and image size of a data set (imagefolder needs data_dir to know them)."""
    key = canonical_name(name)
    size = _pair(image_size)
    if key == "digits" and data_dir is not None:  # nothing is read from there: refuse rather than ignore it
        raise ValueError(f"the digits data set is bundled with scikit-learn; --data-dir {data_dir} does not "
                         "apply to it")
    if key == "imagefolder":
        train_root, _ = folder.split_roots(data_dir)
        tree = folder.tree(str(train_root))
        size = size or folder.first_image_size(str(train_root))
        return DatasetInfo(key, len(tree.classes), 3, size, folder.MEAN, folder.STD, tuple(tree.classes))
    info = _FIXED_INFO[key]
    if size is None or size == info.image_size:
        return info
    return DatasetInfo(info.name, info.num_classes, info.in_channels, size, info.mean, info.std, info.classes)


def _resize(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(images.shape[-2:]) == size:
        return images
    x = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


@dataclass
class _Source:
    """How to build the train-pool and test splits of one data set."""

    info: DatasetInfo
    train_pool: torch.Tensor  # indices the train and val splits are carved from
    test_pool: torch.Tensor
    make_train: Callable[..., BatchedImageDataset]  # (indices, augment, seed)
    make_test: Callable[..., BatchedImageDataset]


def _tensor_maker(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
    def make(idx: torch.Tensor, augment: bool, seed: int = 0) -> BatchedImageDataset:
        return TensorImageDataset(images, labels, info.mean, info.std, idx, augment=augment,
                                  classes=info.classes, seed=seed)
    return make


def _source(key: str, data_dir: str | Path | None, size: tuple[int, int] | None, download: bool) -> _Source:
    info = dataset_info(key, data_dir, size)
    if key in ("fashion-mnist", "cifar10"):
        if key == "fashion-mnist":
            (xtr, ytr), (xte, yte) = (fashion_mnist.load(s, data_dir, download) for s in ("train", "test"))
        else:
            (xtr, ytr), (xte, yte) = (cifar.load(s, data_dir) for s in ("train", "test"))
        xtr, xte = _resize(xtr, size), _resize(xte, size)
        return _Source(info, torch.arange(len(ytr)), torch.arange(len(yte)),
                       _tensor_maker(xtr, ytr, info), _tensor_maker(xte, yte, info))
    if key == "digits":
        x, y = digits.load_all()
        pool, test = seeded_split(len(y), digits.TEST_SIZE, digits.TEST_SEED)
        make = _tensor_maker(_resize(x, size), y, info)
        return _Source(info, pool, test, make, make)
    train_root, test_root = folder.split_roots(data_dir)
    train_tree = folder.tree(str(train_root))
    make_train = _folder_maker(train_tree, info)
    if test_root is None:
        n = len(train_tree)
        pool, test = seeded_split(n, resolve_size(folder.TEST_FRACTION, n, 0, "test size"), folder.TEST_SEED)
        return _Source(info, pool, test, make_train, make_train)
    test_tree = folder.tree(str(test_root))
    if test_tree.classes != train_tree.classes:
        raise DataFormatError(f"{test_root}: classes {test_tree.classes} differ from {train_root}: "
                              f"{train_tree.classes}")
    return _Source(info, torch.arange(len(train_tree)), torch.arange(len(test_tree)), make_train,
                   _folder_maker(test_tree, info))


def _folder_maker(tree, info: DatasetInfo):
    def make(idx: torch.Tensor, augment: bool, seed: int = 0) -> BatchedImageDataset:
        return folder.FolderDataset(tree, info.image_size, idx, info.mean, info.std, augment=augment, seed=seed)
    return make


def get_dataset(name: str, data_dir: str | Path | None = None, split: str = "train",
                val_size: int | float | None = None, seed: int = 0, subset: int | None = None,
                augment: bool = False, image_size: Size = None, download: bool = True) -> BatchedImageDataset:
    """One split ("train", "val" or "test") of a data set, yielding (normalised float image, label).

    val is carved from the training data by a permutation seeded with `seed` (val_size: a count, a
    fraction, or None for the data set's default); train is the rest. subset keeps a seeded random
    subset of at most that many samples. image_size resizes the images once, at load time. Augmentation
    draws from a generator seeded with `seed`."""
    key = canonical_name(name)
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; valid: train, val, test")
    src = _source(key, data_dir, _pair(image_size), download)
    if split == "test":
        return src.make_test(take_subset(src.test_pool, subset, seed), augment, seed)
    pool = src.train_pool
    n_val = resolve_size(val_size, len(pool), _DEFAULT_VAL[key], "val_size")
    keep, held = seeded_split(len(pool), n_val, seed)
    return src.make_train(take_subset(pool[keep if split == "train" else held], subset, seed), augment, seed)


class Loaders(NamedTuple):
    """Train, validation (None when val_size is 0) and test loaders."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader


def make_loader(ds: BatchedImageDataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False, distributed: bool = False) -> DataLoader:
    """A DataLoader that fetches whole batches through the dataset's `__getitems__`.
    distributed shards it with a DistributedSampler (call `loader.sampler.set_epoch(e)` each epoch)."""
    sampler = None
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        sampler = torch.utils.data.DistributedSampler(ds, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    # a seeded generator even without shuffling: it also draws the worker seeds
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=gen,
                      num_workers=num_workers, drop_last=drop_last, collate_fn=collate_batched,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False,
                      worker_init_fn=_reseed_worker if num_workers > 0 else None)


def _reseed_worker(worker_id: int) -> None:
    """In a DataLoader worker: reseed the dataset copy's augmentation generator from the worker's seed (which
    the loader's seeded generator decides), so workers draw different but reproducible crops."""
    info = torch.utils.data.get_worker_info()
    gen = getattr(info.dataset, "generator", None) if info is not None else None
    if isinstance(gen, torch.Generator):
        gen.manual_seed(info.seed % 2**63)


def get_loaders(name: str, batch_size: int = 128, data_dir: str | Path | None = None,
                val_size: int | float | None = None, seed: int = 0, subset: int | None = None,
                augment: bool = False, num_workers: int = 0, eval_batch_size: int | None = None,
                image_size: Size = None, download: bool = True, distributed: bool = False) -> Loaders:
    """(train, val, test) DataLoaders; train is shuffled (seeded) and augmented when asked."""
    kw = dict(data_dir=data_dir, val_size=val_size, seed=seed, subset=subset, image_size=image_size,
              download=download)
    train = get_dataset(name, split="train", augment=augment, **kw)
    val = get_dataset(name, split="val", **kw)
    test = get_dataset(name, split="test", **kw)
    eb = eval_batch_size or max(batch_size, 256)
    return Loaders(
        make_loader(train, batch_size, shuffle=True, seed=seed, num_workers=num_workers,
                    distributed=distributed),
        make_loader(val, eb, num_workers=num_workers) if len(val) else None,
        make_loader(test, eb, num_workers=num_workers),
    )
