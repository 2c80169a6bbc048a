"""QuantizeConfig: every option of int8 quantization after pruning, validated when it is built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config

METHODS = ("auto", "static", "dynamic", "weight_only")
BACKENDS = ("onnxruntime", "torchao")
CALIBRATIONS = ("minmax", "entropy", "percentile")
# What each backend can do: onnxruntime quantizes the exported graph (static QDQ with calibration, or dynamic
# activations); torchao swaps the Linear weights of the eager model (dynamic activations, or weights only).
BACKEND_METHODS = {"onnxruntime": ("auto", "static", "dynamic"), "torchao": ("auto", "dynamic", "weight_only")}


class QuantizeError(ValueError):
    """A model, input or option that int8 quantization cannot work with; the message names it."""


@dataclass
class QuantizeConfig(Config):
    """How to quantize a (pruned) model to int8.

    Args:
        method: "static" (int8 weights and activations, activation ranges calibrated on data), "dynamic"
            (int8 weights, activation ranges computed per batch at run time), "weight_only" (int8 weights,
            float activations; torchao only) or "auto": static for a network with convolutions, dynamic for a
            Linear-only one.
        backend: "onnxruntime" (quantizes the exported ONNX graph; the default because it ran fastest on this
            CPU, see docs/quantization.md) or "torchao" (`quantize_` on the eager model's Linear layers).
        calib_batches: training batches that calibrate activation ranges (static only).
        calibration: onnxruntime's range estimator: "minmax", "entropy" or "percentile".
        per_channel: one weight scale per output channel (True) or per tensor.
        reduce_range: onnxruntime only: int8 weights in 7 bits (True), 8 bits (False), or None: True on an x86
            CPU without VNNI, where onnxruntime's uint8 x int8 kernels add pairs of products in 16 bits and
            can saturate (measured: a pruned CNN's static int8 top-1 fell 13 points on such a CPU with 8 bits),
            False elsewhere. The choice made is recorded in the result.
        fold_bn: fold every BatchNorm that follows a convolution into it before quantizing.
        qat_epochs: fake-quant fine-tuning epochs before the final calibration (0: post-training only).
        qat_steps: cap on optimizer steps per QAT epoch (None: whole epochs).
        qat_lr: SGD learning rate for QAT.
        distill: during QAT, match the float teacher's soft outputs (the dense model when given).
        temperature: distillation temperature.
        alpha: weight of the distillation term (1 - alpha on the labels).
        opset: ONNX opset of the exported graph.
        seed: seeds calibration order and QAT.

    Example:
        >>> QuantizeConfig(method="static", calib_batches=16)
        >>> QuantizeConfig.from_dict({"method": "dynamic"})
    """

    method: str = "auto"
    backend: str = "onnxruntime"
    calib_batches: int = 8
    calibration: str = "minmax"
    per_channel: bool = True
    reduce_range: bool | None = None
    fold_bn: bool = True
    qat_epochs: int = 0
    qat_steps: int | None = None
    qat_lr: float = 1e-3
    distill: bool = True
    temperature: float = 4.0
    alpha: float = 0.7
    opset: int = 17
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizeError(f"QuantizeConfig.method={self.method!r}: choose one of {', '.join(METHODS)}")
        if self.backend not in BACKENDS:
            raise QuantizeError(f"QuantizeConfig.backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.method not in BACKEND_METHODS[self.backend]:
            raise QuantizeError(f"QuantizeConfig: backend {self.backend!r} does not do method {self.method!r} "
                                f"(it does {', '.join(BACKEND_METHODS[self.backend])})")
        if self.calibration not in CALIBRATIONS:
            raise QuantizeError(f"QuantizeConfig.calibration={self.calibration!r}: choose one of "
                                f"{', '.join(CALIBRATIONS)}")
        if self.reduce_range is not None and not isinstance(self.reduce_range, bool):
            raise QuantizeError(f"QuantizeConfig.reduce_range={self.reduce_range!r}: must be True, False or None")
        if self.reduce_range is not None and self.backend != "onnxruntime":
            raise QuantizeError(f"QuantizeConfig.reduce_range is an onnxruntime setting; backend "
                                f"{self.backend!r} does not read it (leave it None)")
        _check_int("calib_batches", self.calib_batches, 1)
        _check_int("qat_epochs", self.qat_epochs, 0)
        _check_int("opset", self.opset, 13)
        _check_int("seed", self.seed, 0)
        if self.qat_steps is not None:
            _check_int("qat_steps", self.qat_steps, 1)
        if self.qat_epochs and (self.backend != "onnxruntime" or self.method == "dynamic"):
            raise QuantizeError("QuantizeConfig: QAT (qat_epochs > 0) calibrates static int8; use "
                                "backend='onnxruntime' with method 'static' or 'auto'")
        for name in ("qat_lr", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise QuantizeError(f"QuantizeConfig.{name}={value!r}: must be a number > 0")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise QuantizeError(f"QuantizeConfig.alpha={self.alpha!r}: must be in [0, 1]")


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise QuantizeError(f"QuantizeConfig.{name}={value!r}: must be an integer >= {low}")
