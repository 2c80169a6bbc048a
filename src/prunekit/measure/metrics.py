"""One call that fills a report's Metrics block: accuracy, parameters, MACs, latency, size."""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ..train.evaluation import evaluate
from .counting import count
from .inputs import Inputs, rebatch
from .latency import measure_latency
from .size import serialized_size


def model_metrics(model: nn.Module, example_inputs: Inputs, eval_loader: Iterable | None = None,
                  device: str | torch.device = "cpu", threads: int | None = None,
                  latency_batches: Iterable[int] = (1, 64), warmup: int = 10, runs: int = 50) -> dict[str, Any]:
    """The ``metrics.before`` / ``metrics.after`` block of report.json (see ``prunekit.report``).

    MACs are counted at batch 1; ``latency_ms`` is the median at batch 1 (when 1 is among ``latency_batches``,
    else the first batch measured) and ``latency`` holds every batch's full result. ``top1``/``top5`` come from
    ``eval_loader`` when given (None otherwise).
    """
    counts = count(model, rebatch(example_inputs, 1))
    latency = {int(b): measure_latency(model, example_inputs, device=device, threads=threads, warmup=warmup,
                                       runs=runs, batch_size=int(b)) for b in latency_batches}
    head = latency.get(1) or next(iter(latency.values()), None)
    top1 = top5 = None
    if eval_loader is not None:
        scores = evaluate(model, eval_loader)
        top1, top5 = scores["top1"], scores["top5"]
    return {"top1": top1, "top5": top5, "params": counts.params, "nonzero_params": counts.nonzero_params,
            "macs": counts.macs, "latency_ms": head.median_ms if head else None,
            "size_bytes": serialized_size(model), "latency": {str(b): r.to_dict() for b, r in latency.items()}}
