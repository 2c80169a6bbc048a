"""prunekit: make PyTorch models smaller and faster by pruning."""
from .api import PlanConfig, TargetError, plan
from .errors import ModelFileError, PlanFormatError
from .graph import ChannelGroup, DependencyGraph, UnsupportedOpError, trace
from .graph.plan import PruningPlan
from .io import load, save
from .measure import count
from .policies import Target
from .surgery import PatchContext, PlanMismatchError, VerifyReport, apply, register_patch, verify
from .transformers import hf as _hf  # noqa: F401 - registers pk.apply's hooks for transformers models
from .transformers import methods as _transformer_methods  # noqa: F401 - registers wanda, sparsegpt, flap, depth

__version__ = "0.1.0"


def export(model, example_inputs, path, **kwargs):
    """Export to ONNX (dynamic batch) and check it in onnxruntime (see prunekit.quantize.export)."""
    from .quantize import export as _export

    return _export(model, example_inputs, path, **kwargs)

__all__ = ["ModelFileError", "PlanFormatError", "ChannelGroup", "PlanConfig", "TargetError", "DependencyGraph",
           "PatchContext", "PlanMismatchError", "PruningPlan", "Target", "UnsupportedOpError", "VerifyReport",
           "apply", "count", "export", "load", "plan", "register_patch", "save", "trace", "verify", "__version__"]
