"""prunekit: make PyTorch models smaller and faster by pruning."""
from .api import PlanConfig, TargetError, plan
from .errors import ModelFileError, PlanFormatError
from .graph import ChannelGroup, DependencyGraph, UnsupportedOpError
from .graph.plan import PruningPlan
from .io import load, save
from .measure import count
from .policies import Target
from .probing import trace
from .quantize import export
from .surgery import (InferenceConfig, PatchContext, PlanMismatchError, VerifyReport, apply, prepare_inference,
                      register_patch, verify)
from .transformers import hf as _hf  # noqa: F401 - registers pk.apply's hooks for transformers models

__version__ = "0.1.0"

__all__ = ["ModelFileError", "PlanFormatError", "ChannelGroup", "PlanConfig", "TargetError", "DependencyGraph",
           "InferenceConfig", "PatchContext", "PlanMismatchError", "PruningPlan", "Target", "UnsupportedOpError",
           "VerifyReport", "apply", "count", "export", "load", "plan", "prepare_inference", "register_patch", "save",
           "trace", "verify", "__version__"]
