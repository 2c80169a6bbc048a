"""The "int8" quantization step of prunekit.workflow (`prunekit prune ... --quantize int8`).

Registered with prunekit.workflow.register_quantizer when prunekit.quantize is imported. The step leaves
the float model as the workflow's model (it is what model.safetensors stores and what "after" measures) and
writes the int8 ONNX next to it; the int8 row of the report comes back as info["metrics"].
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from torch import nn

from ..measure.inputs import Inputs
from .api import quantize_model
from .compare import float_latency, int8_metrics
from .config import QuantizeConfig

SCHEME = "int8"


def int8_step(model: nn.Module, example_inputs: Inputs, calib_loader: Iterable, config: Any,
              out: str | os.PathLike | None = None, test_loader: Iterable | None = None,
              teacher: nn.Module | None = None, latency_runs: int = 20, threads: int | None = 1,
              ) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize the pruned model to int8 and measure it.

    Args:
        model: the pruned, recovered float model (returned unchanged).
        example_inputs: the workflow's example input.
        calib_loader: training batches for calibration (and QAT).
        config: the workflow's QuantizeConfig (scheme "int8", calib_batches, options: any field of
            prunekit.quantize.QuantizeConfig, e.g. {"method": "dynamic"} or {"qat_epochs": 1}).
        out: the run folder; model.int8.onnx and model.fp32.onnx go there (the workflow has already refused
            earlier outputs unless it runs with overwrite).
        test_loader: labelled batches for the int8 top-1.
        teacher: float model QAT distils from.
        latency_runs: timed runs per batch size (0: no latency).
        threads: threads of the latency measurements.

    Returns:
        (model, info): info holds "result" (QuantizeResult.to_dict()) and "metrics" (the after row with
        onnxruntime latencies, and the int8 row).
    """
    options = dict(getattr(config, "options", {}) or {})
    if "calib_batches" in options:
        raise TypeError("quantize options: calib_batches is the workflow QuantizeConfig's own field; do not repeat "
                        "it in options")
    cfg = QuantizeConfig.from_dict({"calib_batches": getattr(config, "calib_batches", 8), **options})
    res = quantize_model(model, cfg, calib_loader, example_inputs=example_inputs, out=out, train_loader=calib_loader,
                         teacher=teacher, overwrite=out is not None)
    batches = (1, 64) if latency_runs else (1,)
    info: dict[str, Any] = {"result": res.to_dict()}
    after_ort = float_latency(model, example_inputs, batches, max(latency_runs, 1), threads) if latency_runs else None
    info["metrics"] = {"after_latency_by_runtime": after_ort,
                       "int8": int8_metrics(res, example_inputs, test_loader, batches, max(latency_runs, 1), threads)}
    return model, info

