"""Removing channels, masks, verification."""
from ..errors import PlanMismatchError
from .apply import apply
from .inference import InferenceConfig, InferenceError, InferenceReport, prepare_inference
from .patches import PatchContext, register_patch, unregister_patch
from .verify import VerifyReport, verify, zeroed_copy

__all__ = ["InferenceConfig", "InferenceError", "InferenceReport", "PatchContext", "PlanMismatchError", "VerifyReport",
           "apply", "prepare_inference", "register_patch", "unregister_patch", "verify", "zeroed_copy"]
