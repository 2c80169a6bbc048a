"""int8 after pruning and ONNX export: onnxruntime static QDQ / dynamic int8 (default), torchao on Linear
layers, BatchNorm folding, quantization-aware fine-tuning, and `export` checked against PyTorch."""
from .api import QuantizeResult, quantize_model, resolve_method
from .config import BACKENDS, METHODS, QuantizeConfig, QuantizeError
from .export import ExportError, ExportResult, export
from .fold import fold_batchnorm
from .pipeline import int8_step
from .qat import QATReport, qat_finetune

__all__ = ["BACKENDS", "METHODS", "ExportError", "ExportResult", "QATReport", "QuantizeConfig", "QuantizeError",
           "QuantizeResult", "export", "fold_batchnorm", "int8_step", "qat_finetune", "quantize_model",
           "resolve_method"]
