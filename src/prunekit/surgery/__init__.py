"""Removing channels, masks, verification."""
from .apply import PlanMismatchError, apply
from .patches import PatchContext, register_patch, unregister_patch
from .verify import VerifyReport, verify, zeroed_copy

__all__ = ["PatchContext", "PlanMismatchError", "VerifyReport", "apply", "register_patch", "unregister_patch", "verify",
           "zeroed_copy"]
