"""The variants the quantize suite times: a float model (torch and its ONNX) or an int8 result."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..quantize import export


class Variant:
    """One model variant: a float torch model (timed in torch and onnxruntime) or an int8 result."""

    def __init__(self, name: str, macs_kept: float, top1: float, onnx: Path, torch_model: nn.Module | None,
                 info: dict[str, Any] | None = None) -> None:
        self.name, self.macs_kept, self.top1, self.onnx = name, macs_kept, top1, onnx
        self.torch_model, self.info = torch_model, info or {}


def float_variant(name: str, model: nn.Module, macs_kept: float, top1: float, example: Any, folder: Path) -> Variant:
    res = export(model, example, folder / f"{name}.onnx", latency_batches=(), atol=1e-3)
    return Variant(name, macs_kept, top1, res.path, model, {"export_max_abs_diff": res.max_abs_diff})


def int8_variant(name: str, result, macs_kept: float, top1: float) -> Variant:
    info = {"method": result.method, "backend": result.backend, "int8_vs_fp32": result.int8_vs_fp32,
            "calib_batches": result.calib_batches, "qat_steps": result.qat.steps if result.qat else 0,
            "folded_batchnorms": len(result.folded)}
    torch_model = result.model if result.backend == "torchao" else None
    return Variant(name, macs_kept, top1, result.onnx_path, torch_model, info)
