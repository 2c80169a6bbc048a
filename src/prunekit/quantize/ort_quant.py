"""int8 with onnxruntime.quantization on an exported ONNX file: static QDQ (calibrated) and dynamic."""
from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Iterable

from ..measure.inputs import Inputs
from .config import QuantizeConfig, QuantizeError
from .runtime import feed, session


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a fixed list of input feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = list(feeds)
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def _preprocess(src: Path, dst: Path) -> Path:
    """Shape inference and graph optimisation (Conv+BN, Gemm fusion) that quantization expects first."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception:  # noqa: BLE001 - symbolic shape inference fails on some transformer graphs
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def cpu_has_vnni(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool | None:
    """Whether this x86 CPU has VNNI (avx512_vnni / avx_vnni / amx_int8 in its flags); None when the flags
    cannot be read (not Linux) or the CPU is not x86."""
    if not _is_x86():
        return None
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    if not flags:
        return None
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def resolve_reduce_range(config: QuantizeConfig) -> bool:
    """config.reduce_range, or for None: True on an x86 CPU without VNNI (or whose flags cannot be read, the
    safe side), False on other CPUs."""
    if config.reduce_range is not None:
        return config.reduce_range
    return _is_x86() and cpu_has_vnni() is not True


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, config: QuantizeConfig,
                  method: str, calib_inputs: Iterable[Inputs] = ()) -> Path:
    """Write the int8 version of ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: float ONNX model (as `export` writes it).
        out_path: int8 ONNX file to write (the caller has checked it may be written).
        config: per_channel, reduce_range (resolved by `resolve_reduce_range`) and calibration are read
            from it.
        method: "static" (QDQ: int8 weights and activations, ranges from ``calib_inputs``) or "dynamic"
            (int8 weights, activation ranges per batch at run time; MatMul/Gemm, and Gather so that
            embedding tables are int8 too).
        calib_inputs: model inputs (tensor, tuple or dict per batch) for static calibration.

    Returns:
        out_path.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    reduce = resolve_reduce_range(config)
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocess(fp32_path, Path(tmp) / "pre.onnx")
        if method == "dynamic":
            quantize_dynamic(str(src), str(out_path), per_channel=config.per_channel, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm", "Gather"], reduce_range=reduce)
            return out_path
        if method != "static":
            raise QuantizeError(f"onnxruntime quantization method {method!r}: choose static or dynamic")
        sess = session(src)
        feeds = [feed(sess, x) for x in calib_inputs]
        if not feeds:
            raise QuantizeError("static int8 needs calibration batches; the calibration loader gave none")
        calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[config.calibration]
        quantize_static(str(src), str(out_path), _Calibration(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=config.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=calib, reduce_range=reduce)
    return out_path
