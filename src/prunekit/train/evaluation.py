"""Top-1 / top-5 accuracy and loss over a data loader (summed across ranks under torch.distributed)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.inputs import call_model
from . import distributed as dist_utils


def move(obj: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples, lists, dicts) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(move(v, device) for v in obj)
    return obj


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """A batch is ``(inputs, targets)`` (tuple/list) or a dict with "input"/"target" keys."""
    if isinstance(batch, dict):
        return batch["input"], batch["target"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError("expected batches as (inputs, targets) or {'input': ..., 'target': ...}")


def _topk_hits(outputs: torch.Tensor, targets: torch.Tensor, ks: Iterable[int]) -> list[torch.Tensor]:
    ks = list(ks)
    kmax = min(max(ks), outputs.shape[-1])
    hits = outputs.topk(kmax, dim=-1).indices.eq(targets.view(-1, 1))
    return [hits[:, :min(k, kmax)].any(dim=1).sum().double() for k in ks]


def correct_topk(outputs: torch.Tensor, targets: torch.Tensor, ks: Iterable[int] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at the class count)."""
    return [int(h.item()) for h in _topk_hits(outputs, targets, ks)]


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device | None = None,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             amp: bool = False, max_steps: int | None = None) -> dict[str, float]:
    """Mean loss, top-1 and top-5 accuracy (fractions in [0, 1]) and the sample count over ``loader``.

    The model is evaluated in eval mode (its mode is restored). Under torch.distributed the sums are
    all-reduced, so every rank returns the metrics of the union of the ranks' shards.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    loss_fn = loss_fn or F.cross_entropy
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()
    was_training = model.training
    model.eval()
    try:
        for step, batch in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            inputs, targets = move(split_batch(batch), device)
            with autocast:
                outputs = call_model(model, inputs)
            outputs = outputs.float()
            hits = _topk_hits(outputs, targets, (1, 5))
            n = torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=device)
            loss = loss_fn(outputs, targets).double() * n  # loss_fn returns the batch mean
            sums += torch.stack([hits[0], hits[1], loss, n])
    finally:
        model.train(was_training)
    sums = dist_utils.all_reduce_sum(sums.cpu())
    n = max(1.0, float(sums[3]))
    return {"top1": float(sums[0]) / n, "top5": float(sums[1]) / n, "loss": float(sums[2]) / n,
            "count": int(sums[3])}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list, device: torch.device) -> None:
    """Recompute every BatchNorm's running statistics as the plain average over `batches` (model left in eval)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    model.eval()
    if not bns or not batches:
        return
    moms = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in batches:
            call_model(model, move(split_batch(batch)[0], device))
    finally:
        for bn, m in zip(bns, moms):
            bn.momentum = m
        model.eval()
