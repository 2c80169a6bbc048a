"""Measurement: parameters, MACs (from executed ops), latency, serialized size."""
from .counting import Counts, count, count_macs, count_params
from .metrics import model_metrics
from .latency import LatencyResult, latency_at_batches, measure_latency, speedup
from .onnx import export_onnx, onnx_latency
from .size import file_size, serialized_size, unique_state_dict

__all__ = [
    "Counts", "count", "count_macs", "count_params",
    "LatencyResult", "latency_at_batches", "measure_latency", "speedup",
    "export_onnx", "onnx_latency",
    "file_size", "serialized_size", "unique_state_dict", "model_metrics",
]
