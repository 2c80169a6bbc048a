"""Entry points: names, info, seeded splits, subsets, loaders and tensor augmentation."""
from __future__ import annotations

import pytest
import torch

from prunekit.data import (TensorImageDataset, dataset_info, get_dataset, get_loaders, list_datasets,
                           random_crop_flip)
from .writers import write_fmnist


pytestmark = pytest.mark.usefixtures("single_thread")


def test_unknown_dataset_lists_valid():
    with pytest.raises(ValueError) as e:
        get_dataset("imagenet-22k")
    for name in ("fashion-mnist", "digits", "cifar10", "imagefolder"):
        assert name in str(e.value)
    assert set(list_datasets()) == {"fashion-mnist", "digits", "cifar10", "imagefolder"}
    with pytest.raises(ValueError, match="unknown split 'dev'; valid: train, val, test"):
        get_dataset("digits", split="dev")


def test_dataset_info():
    fm = dataset_info("Fashion_MNIST")
    assert (fm.name, fm.num_classes, fm.in_channels, fm.image_size) == ("fashion-mnist", 10, 1, (28, 28))
    assert fm.input_shape == (1, 28, 28) and fm.classes[9] == "Ankle boot"
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("digits", image_size=16).input_shape == (1, 16, 16)


def test_seeded_split_is_deterministic_disjoint_and_complete(tmp_path):
    write_fmnist(tmp_path, n_train=100)

    def split(seed):
        return [get_dataset("fashion-mnist", data_dir=tmp_path, split=s, val_size=20, seed=seed).indices
                for s in ("train", "val")]

    tr0, va0 = split(0)
    tr0b, va0b = split(0)
    _, va1 = split(1)
    assert (len(tr0), len(va0)) == (80, 20)
    assert torch.equal(va0, va0b) and torch.equal(tr0, tr0b)
    assert not torch.equal(va0, va1)
    assert sorted(torch.cat([tr0, va0]).tolist()) == list(range(100))
    frac = get_dataset("fashion-mnist", data_dir=tmp_path, split="val", val_size=0.25)
    assert len(frac) == 25
    with pytest.raises(ValueError, match="val_size=100 must leave samples out of 100"):
        get_dataset("fashion-mnist", data_dir=tmp_path, val_size=100)


def test_subset_is_seeded_and_within_split(tmp_path):
    write_fmnist(tmp_path, n_train=100)
    a = get_dataset("fashion-mnist", data_dir=tmp_path, val_size=20, subset=10, seed=3)
    b = get_dataset("fashion-mnist", data_dir=tmp_path, val_size=20, subset=10, seed=3)
    full = get_dataset("fashion-mnist", data_dir=tmp_path, val_size=20, seed=3)
    assert len(a) == 10 and torch.equal(a.indices, b.indices)
    assert set(a.indices.tolist()) <= set(full.indices.tolist())


def test_digits_fallback_splits():
    sizes = {s: len(get_dataset("digits", split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1200, "val": 300, "test": 297}
    test_a = get_dataset("digits", split="test", seed=0).indices
    test_b = get_dataset("digits", split="test", seed=5).indices
    assert torch.equal(test_a, test_b)  # the test part does not move with the seed
    train = get_dataset("digits", split="train", seed=5).indices
    assert not set(train.tolist()) & set(test_a.tolist())
    x, y = get_dataset("digits", split="train")[0]
    assert x.shape == (1, 8, 8) and 0 <= y < 10
    assert get_dataset("digits", image_size=(28, 28))[0][0].shape == (1, 28, 28)


def test_loaders_batches(tmp_path):
    write_fmnist(tmp_path, n_train=50, n_test=20)
    train, val, test = get_loaders("fashion-mnist", batch_size=16, data_dir=tmp_path, val_size=10)
    shapes = [tuple(x.shape) for x, _ in train]
    assert shapes == [(16, 1, 28, 28), (16, 1, 28, 28), (8, 1, 28, 28)]
    xs, ys = zip(*train)
    assert torch.cat(ys).sort().values.tolist() == sorted(train.dataset.targets.tolist())
    assert sum(len(y) for _, y in val) == 10 and sum(len(y) for _, y in test) == 20
    assert xs[0].dtype == torch.float32 and ys[0].dtype == torch.int64
    fresh = get_loaders("fashion-mnist", 16, data_dir=tmp_path, val_size=10).train
    epoch1, epoch2 = [torch.cat([y for _, y in fresh]) for _ in range(2)]
    assert torch.equal(epoch2, torch.cat(ys))  # seeded shuffle: same order per epoch number
    assert not torch.equal(epoch1, epoch2)  # and a new order each epoch
    _, no_val, _ = get_loaders("fashion-mnist", 16, data_dir=tmp_path, val_size=0)
    assert no_val is None


def test_loader_with_workers_matches_single_process(tmp_path):
    write_fmnist(tmp_path, n_train=30, n_test=10)
    kw = dict(data_dir=tmp_path, val_size=0, eval_batch_size=4)
    a = [x for x, _ in get_loaders("fashion-mnist", 8, **kw).test]
    b = [x for x, _ in get_loaders("fashion-mnist", 8, num_workers=1, **kw).test]
    assert [len(x) for x in a] == [4, 4, 2] and all(torch.equal(p, q) for p, q in zip(a, b))


def test_random_crop_flip_moves_pixels_not_values():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    y = random_crop_flip(x, padding=2)
    assert y.shape == x.shape and y.dtype == torch.uint8
    for a, b in zip(x, y):  # every output is a padded shift, flipped or not, of its own input
        pad = torch.nn.functional.pad(a, (2, 2, 2, 2))
        crops = [pad[:, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(b, c) or torch.equal(b, c.flip(-1)) for c in crops)
    changed = (y != x).flatten(1).any(1).float().mean()
    assert changed > 0.8  # 1 in 25 crops is centred, and half of those are flipped
    flipped_only = random_crop_flip(x, padding=0)
    n_flipped = sum(torch.equal(b, a.flip(-1)) for a, b in zip(x, flipped_only))
    assert 32 <= n_flipped <= 96


def test_augment_only_changes_train_and_keeps_normalisation():
    images = torch.full((8, 1, 4, 4), 255, dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.zeros(8), mean=(0.5,), std=(0.25,), augment=False)
    x, _ = ds.batch(range(8))
    assert torch.allclose(x, torch.full_like(x, 2.0))
    aug = TensorImageDataset(images, torch.zeros(8), mean=(0.5,), std=(0.25,), augment=True)
    xa, _ = aug.batch(range(8))
    assert set(xa.unique().tolist()) <= {2.0, -2.0}  # padded pixels are black: (0 - 0.5) / 0.25
