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
from .surgery import PatchContext, PlanMismatchError, VerifyReport, apply, register_patch, verify
from .transformers import hf as _hf  # noqa: F401 - registers pk.apply's hooks for transformers models

__version__ = "0.1.0"

__all__ = ["ModelFileError", "PlanFormatError", "ChannelGroup", "PlanConfig", "TargetError", "DependencyGraph",
           "PatchContext", "PlanMismatchError", "PruningPlan", "Target", "UnsupportedOpError", "VerifyReport",
           "apply", "count", "export", "load", "plan", "register_patch", "save", "trace", "verify", "__version__"]
