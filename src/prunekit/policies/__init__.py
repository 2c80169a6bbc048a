"""Allocation policies: how many channels each group loses to reach a ratio or a Target."""
from .base import POLICIES, Target, get_policy, list_policies, register_policy, select_kept
from . import uniform  # noqa: F401

__all__ = ["POLICIES", "Target", "get_policy", "list_policies", "register_policy", "select_kept"]
