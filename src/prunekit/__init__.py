"""prunekit: make PyTorch models smaller and faster by pruning."""
from .api import PlanConfig, TargetError, plan
from .errors import ModelFileError, PlanFormatError
from .graph import ChannelGroup, DependencyGraph, UnsupportedOpError, trace
from .graph.plan import PruningPlan
from .policies import Target
from .surgery import PatchContext, PlanMismatchError, VerifyReport, apply, register_patch, verify

__version__ = "0.1.0"


def count(model, example_inputs):
    """Parameters and MACs of `model` on `example_inputs` (see prunekit.measure.count)."""
    from .measure import count as _count

    return _count(model, example_inputs)


def save(model, path, plan=None, **kwargs):
    """Save a (pruned) model: safetensors weights + JSON description (see prunekit.io.save)."""
    from .io import save as _save

    return _save(model, path, plan=plan, **kwargs)


def load(path, **kwargs):
    """Rebuild a model saved with prunekit.save (or a compressed container) without pickle."""
    from .io import load as _load

    return _load(path, **kwargs)


def export(model, example_inputs, path, **kwargs):
    """Export to ONNX (dynamic batch) and check it in onnxruntime (see prunekit.quantize.export)."""
    from .quantize import export as _export

    return _export(model, example_inputs, path, **kwargs)


__all__ = ["ModelFileError", "PlanFormatError", "ChannelGroup", "PlanConfig", "TargetError", "DependencyGraph", "PatchContext", "PlanMismatchError", "PruningPlan", "Target",
           "UnsupportedOpError", "VerifyReport", "apply", "count", "export", "load", "plan", "register_patch", "save", "trace",
           "verify", "__version__"]
