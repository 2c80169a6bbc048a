"""Shared pieces of the CLI trust tests: a tiny learnable Fashion-MNIST and short train / prune commands."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from prunekit.cli import main

from data.writers import write_fmnist  # tests/data: tiny files in the real formats


def tiny_fmnist(folder: Path, n_train: int = 60, n_test: int = 20) -> Path:
    write_fmnist(folder, n_train=n_train, n_test=n_test, learnable=True)
    return folder


def train_argv(data: Path, out: Path, *extra: str, model: str = "lenet5") -> list[str]:
    """One quick epoch of `prunekit train` on the tiny data (10 validation images, batches of 8)."""
    return ["train", "--model", model, "--dataset", "fashion-mnist", "--data-dir", str(data), "--epochs", "1",
            "--val-size", "10", "--batch-size", "8", "--out", str(out), "--latency-runs", "0", "--no-progress",
            *extra]


def trained_run(root: Path, name: str = "run") -> tuple[Path, Path]:
    """(tiny data folder, a finished one-epoch LeNet-5 run on it) under root."""
    data = tiny_fmnist(root / "data")
    assert main(train_argv(data, root / name)) == 0
    return data, root / name


def prune_argv(out: Path, cache: Path, *extra: str) -> list[str]:
    """`prunekit prune` of a width-0.25 ResNet-20 on digits: 3 base steps, 3 fine-tuning steps, no timing."""
    return ["prune", "--model", "resnet20", "--width", "0.25", "--dataset", "digits", "--epochs", "1",
            "--max-steps-per-epoch", "3", "--finetune-epochs", "1", "--out", str(out), "--latency-runs", "0",
            "--cache-dir", str(cache), "--no-progress", "--batch-size", "64", *extra]


def tensors(path: Path) -> dict:
    """The tensors of a saved model file, by name."""
    return load_file(str(path))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (recursively) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
