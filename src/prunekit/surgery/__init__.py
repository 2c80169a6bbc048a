"""Removing channels, masks, verification."""
from .apply import PlanMismatchError, apply
from .verify import VerifyReport, verify, zeroed_copy

__all__ = ["PlanMismatchError", "VerifyReport", "apply", "verify", "zeroed_copy"]
