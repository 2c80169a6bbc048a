"""`quantize_model`: int8 after pruning, through onnxruntime (default) or torchao."""
from __future__ import annotations

import copy
import itertools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..measure.inputs import Inputs, call_model, rebatch
from ..measure.latency import LatencyResult, measure_latency
from ..train.evaluation import evaluate
from ..utils import atomic_write
from .config import QuantizeConfig, QuantizeError
from .export import ExportResult, check_example_inputs, export
from .fold import fold_batchnorm
from .ort_quant import quantize_onnx, resolve_reduce_range
from .qat import QATReport, qat_finetune
from .runtime import batch_inputs, feed, ort_accuracy, ort_latency, session

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
FP32_NAME, INT8_NAME = "model.fp32.onnx", "model.int8.onnx"


@dataclass
class QuantizeResult:
    """The int8 model and what it took.

    method / backend: what ran ("static" / "dynamic" / "weight_only"; "onnxruntime" / "torchao").
    onnx_path: the int8 ONNX file (onnxruntime backend). fp32_onnx_path: the float file it was made from.
    model: the float model that was exported (BatchNorm folded, QAT weights) for onnxruntime; the torchao
    int8 model for torchao. size_bytes: int8 artifact bytes. fp32_size_bytes: the float ONNX / state bytes.
    folded: (conv, bn) pairs folded. calib_batches: batches calibrated on. int8_vs_fp32: largest |int8 - fp32|
    output difference on the example inputs. export: the float export's check. qat: QAT report or None.
    reduce_range: whether onnxruntime stored 7-bit weights (config.reduce_range, resolved for this CPU).
    """

    method: str
    backend: str
    config: QuantizeConfig
    model: nn.Module
    size_bytes: int
    fp32_size_bytes: int
    int8_vs_fp32: float
    onnx_path: Path | None = None
    fp32_onnx_path: Path | None = None
    folded: list[tuple[str, str]] = field(default_factory=list)
    calib_batches: int = 0
    export: ExportResult | None = None
    qat: QATReport | None = None
    reduce_range: bool = False
    _session: Any = field(default=None, repr=False)
    _tmp: Any = field(default=None, repr=False)

    def predict(self, inputs: Inputs) -> np.ndarray:
        """The int8 model's first output on ``inputs`` as a float32 array."""
        if self.backend == "onnxruntime":
            return self.session().run(None, feed(self.session(), inputs))[0].astype(np.float32)
        with torch.inference_mode():
            out = call_model(self.model, inputs)
        return (out if isinstance(out, torch.Tensor) else out[0]).float().numpy()

    def session(self):
        """The onnxruntime session of the int8 file (onnxruntime backend)."""
        if self.onnx_path is None:
            raise QuantizeError(f"a {self.backend} result has no ONNX file")
        if self._session is None:
            self._session = session(self.onnx_path)
        return self._session

    def accuracy(self, loader: Iterable, max_batches: int | None = None) -> float:
        """Top-1 accuracy of the int8 model over a labelled loader."""
        if self.backend == "onnxruntime":
            return ort_accuracy(self.session(), loader, max_batches)
        batches = loader if max_batches is None else list(itertools.islice(loader, max_batches))
        return float(evaluate(self.model, batches)["top1"])

    def latency(self, example_inputs: Inputs, batches: Sequence[int] = (1, 64), runs: int = 30,
                threads: int | None = None) -> dict[int, LatencyResult]:
        """Median latency of the int8 model per batch size (onnxruntime session, or torch for torchao)."""
        if self.backend == "onnxruntime":
            return ort_latency(session(self.onnx_path, threads), example_inputs, batches, runs=runs,
                               threads=threads)
        return {int(b): measure_latency(self.model, example_inputs, threads=threads, runs=runs, batch_size=int(b))
                for b in batches}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary, as recorded in report.json."""
        return {"method": self.method, "backend": self.backend, "config": self.config.to_dict(),
                "onnx_path": str(self.onnx_path) if self.onnx_path else None, "size_bytes": self.size_bytes,
                "fp32_size_bytes": self.fp32_size_bytes, "int8_vs_fp32": self.int8_vs_fp32,
                "folded_batchnorms": len(self.folded), "calib_batches": self.calib_batches,
                "reduce_range": self.reduce_range,
                "export": self.export.to_dict() if self.export else None,
                "qat": None if self.qat is None else {"steps": self.qat.steps, "losses": self.qat.losses}}


def resolve_method(model: nn.Module, config: QuantizeConfig) -> str:
    """The method "auto" stands for: static for a network with convolutions, dynamic otherwise (and always
    dynamic with torchao, which quantizes Linear layers only)."""
    if config.method != "auto":
        return config.method
    if config.backend == "torchao":
        return "dynamic"
    return "static" if any(isinstance(m, _CONVS) for m in model.modules()) else "dynamic"


def _calibration_inputs(loader: Iterable | None, n: int) -> list[Inputs]:
    if loader is None:
        raise QuantizeError("static int8 needs calib_loader (training batches to calibrate activation ranges)")
    out = [batch_inputs(b)[0] for b in itertools.islice(loader, n)]
    if not out:
        raise QuantizeError("the calibration loader gave no batches")
    return out


def quantize_model(model: nn.Module, config: QuantizeConfig | dict | None = None, calib_loader: Iterable | None = None,
                   *, example_inputs: Inputs | None = None, out: str | os.PathLike | None = None,
                   train_loader: Iterable | None = None, teacher: nn.Module | None = None,
                   overwrite: bool = False, atol: float = 1e-3) -> QuantizeResult:
    """int8-quantize a (pruned) model; the input model is not changed.

    Args:
        model: the float model.
        config: QuantizeConfig (or its dict form); default QuantizeConfig().
        calib_loader: batches whose inputs calibrate static int8 (the first ``config.calib_batches``).
        example_inputs: inputs for export and checks (default: one sample of the first calibration batch).
        out: folder for model.fp32.onnx and model.int8.onnx (default: a temporary folder kept by the result).
        train_loader: labelled batches for QAT (default: ``calib_loader``).
        teacher: float model QAT distils from (the dense model, when given).
        overwrite: replace existing ONNX files in ``out``.
        atol: tolerance of the float export check.

    Returns:
        QuantizeResult.

    Example:
        >>> res = quantize_model(pruned, QuantizeConfig(calib_batches=8), train_loader)
        >>> res.accuracy(test_loader), res.size_bytes
    """
    cfg = QuantizeConfig.from_dict(config) if isinstance(config, dict) else (config or QuantizeConfig())
    if not isinstance(cfg, QuantizeConfig):
        raise TypeError(f"config must be a QuantizeConfig or dict, got {type(cfg).__name__}")
    if not isinstance(model, nn.Module):
        raise QuantizeError(f"expected a torch.nn.Module to quantize, got {type(model).__name__}")
    method = resolve_method(model, cfg)
    calib = _calibration_inputs(calib_loader, cfg.calib_batches) if method == "static" else []
    if example_inputs is None:
        source = calib[0] if calib else (_calibration_inputs(calib_loader, 1)[0] if calib_loader else None)
        if source is None:
            raise QuantizeError("pass example_inputs or a calib_loader to quantize a model")
        example_inputs = rebatch(source, 1)
    work = copy.deepcopy(model).cpu().eval()
    check_example_inputs(work, example_inputs)
    qat = None
    if cfg.qat_epochs:  # before folding: BatchNorm (statistics frozen) keeps the fine-tuning stable
        qat = qat_finetune(work, train_loader if train_loader is not None else calib_loader, cfg, teacher)
    folded = fold_batchnorm(work) if cfg.fold_bn and method == "static" else []
    if cfg.backend == "torchao":
        return _torchao(work, cfg, method, example_inputs, folded)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="prunekit-int8-")
        out = tmp.name
    out = Path(out)
    int8_path = out / INT8_NAME
    if int8_path.exists() and not overwrite:
        raise FileExistsError(f"{int8_path} exists; pass overwrite=True (--overwrite) to replace it")
    checked = export(work, example_inputs, out / FP32_NAME, opset=cfg.opset, atol=atol, overwrite=overwrite,
                     latency_batches=())
    atomic_write(int8_path, lambda t: quantize_onnx(checked.path, t, cfg, method, calib), overwrite)
    sess = session(int8_path)
    ref = session(checked.path).run(None, feed(session(checked.path), example_inputs))[0]
    got = sess.run(None, feed(sess, example_inputs))[0]
    return QuantizeResult(method=method, backend="onnxruntime", config=cfg, model=work,
                          size_bytes=int8_path.stat().st_size, fp32_size_bytes=checked.size_bytes,
                          int8_vs_fp32=float(np.max(np.abs(ref - got))), onnx_path=int8_path,
                          fp32_onnx_path=checked.path, folded=folded, calib_batches=len(calib), export=checked,
                          qat=qat, reduce_range=resolve_reduce_range(cfg), _session=sess, _tmp=tmp)


def _torchao(work: nn.Module, cfg: QuantizeConfig, method: str, example_inputs: Inputs,
             folded: list[tuple[str, str]]) -> QuantizeResult:
    """torchao `quantize_` on every Linear layer (dynamic int8 activations + int8 weights, or weights only)."""
    import io

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    if not any(isinstance(m, nn.Linear) for m in work.modules()):
        raise QuantizeError("backend 'torchao' quantizes Linear layers and the model has none; use "
                            "backend='onnxruntime' (static int8 for convolutions)")
    with torch.inference_mode():
        ref = call_model(work, example_inputs)
    fp32_bytes = _state_bytes(work, io)
    ao_config = Int8DynamicActivationInt8WeightConfig() if method == "dynamic" else Int8WeightOnlyConfig()
    quantize_(work, ao_config, filter_fn=lambda m, name: isinstance(m, nn.Linear))
    with torch.inference_mode():
        got = call_model(work, example_inputs)
    ref = ref if isinstance(ref, torch.Tensor) else ref[0]
    got = got if isinstance(got, torch.Tensor) else got[0]
    return QuantizeResult(method=method, backend="torchao", config=cfg, model=work, size_bytes=_state_bytes(work, io),
                          fp32_size_bytes=fp32_bytes, int8_vs_fp32=float((ref - got).abs().max()), folded=folded)


def _state_bytes(model: nn.Module, io) -> int:
    """Bytes of the model's state_dict as torch serialises it (measured in memory; nothing is written)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()
