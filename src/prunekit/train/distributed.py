"""torch.distributed helpers for fine-tuning under ``torchrun``: set-up, samplers, DDP wrapping, rank checks.

Launch: ``torchrun --nproc_per_node N script.py``; in the script call :func:`init_distributed` first, build the
loaders with :func:`distributed_loader`, and hand the model to ``Trainer`` (it wraps it in DDP itself). Only the
main process (rank 0) writes checkpoints and logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the number of processes, its local GPU index and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Backend: nccl when CUDA is available, gloo otherwise. Without those variables (or WORLD_SIZE=1) nothing is
    initialised and a single-process ``DistInfo`` is returned, so the same script runs with plain ``python``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count())) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size <= 1:
        return DistInfo(0, 1, 0, device, None)
    backend = backend or ("nccl" if cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device, dist.get_backend())


def destroy_distributed() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the one process that writes files and logs."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _reduce_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (returns it unchanged in a single process)."""
    if not is_distributed():
        return tensor
    t = tensor.to(_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(tensor.device)


def wrap_model(model: nn.Module, device: torch.device | str | None = None, sync_bn: bool = False,
               **ddp_kwargs: Any) -> nn.Module:
    """Move ``model`` to ``device`` and wrap it in DistributedDataParallel (unchanged in a single process).

    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts identical.
    """
    if device is not None:
        model = model.to(device)
    if not is_distributed() or isinstance(model, DistributedDataParallel):
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    ids = [dev.index] if dev.type == "cuda" and dev.index is not None else None
    return DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def distributed_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                       drop_last: bool = False, **loader_kwargs: Any) -> DataLoader:
    """A DataLoader over this rank's shard (DistributedSampler) or, in a single process, over everything.

    ``batch_size`` is per process. The shuffling order is seeded; the Trainer calls ``sampler.set_epoch``.
    """
    if is_distributed():
        sampler = DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                      **loader_kwargs)
