"""Training configuration, optimizer and the per-step warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class TrainConfig:
    """Everything that decides a training run. Learning rates change every optimizer step, not every epoch."""

    epochs: int = 10
    lr: float = 0.1
    optimizer: str = "sgd"               # "sgd" | "adamw"
    momentum: float = 0.9                # SGD momentum (AdamW uses betas)
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    schedule: str = "cosine"             # "cosine" (to min_lr) | "constant"
    warmup_epochs: float = 0.0           # linear warm-up from lr/warmup_steps to lr
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    amp: bool = False                    # float16 autocast + GradScaler; only takes effect on CUDA
    seed: int | None = 0                 # seeds python, numpy and torch at the start of fit()
    deterministic: bool = False          # also ask cuDNN for deterministic kernels
    grad_clip: float | None = None       # max global gradient norm
    max_steps_per_epoch: int | None = None   # cap for quick runs and tests
    eval_every: int = 1                  # epochs between validations (the last epoch is always validated)
    progress: bool = True                # rich progress bar (only shown on a terminal, main process)
    verbose: bool = True                 # one quiet line per epoch

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.epochs < 0 or self.lr <= 0 or self.warmup_epochs < 0:
            raise ValueError("epochs and warmup_epochs must be >= 0 and lr > 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be >= 1 or None")
        self.betas = tuple(self.betas)  # type: ignore[assignment]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.nesterov and config.momentum > 0)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr``."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    min_ratio = config.min_lr / config.lr

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, config.schedule, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
