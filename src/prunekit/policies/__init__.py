"""Allocation policies: how many channels each group loses to reach a ratio or a Target.

uniform (same ratio everywhere), global (one threshold over normalised scores), width (widest group first),
srr (most structurally redundant group first); modules `auto` and `latency*` register more when present.
"""
import importlib
import importlib.util

from .base import POLICIES, Target, get_policy, list_policies, register_policy, select_kept
from . import uniform  # noqa: F401
from . import global_threshold  # noqa: F401
from . import width  # noqa: F401
from . import srr  # noqa: F401
from .srr import srr_redundancy

for _name in ("auto", "latency"):  # written by others; registered when they exist
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["POLICIES", "Target", "get_policy", "list_policies", "register_policy", "select_kept", "srr_redundancy"]
