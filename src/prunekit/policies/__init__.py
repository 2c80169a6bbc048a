"""Allocation policies: how many channels each group loses to reach a ratio or a Target.

uniform (same ratio everywhere), global (one threshold over normalised scores), width (widest group first),
srr (most structurally redundant group first), auto (searched per-group ratios for MACs, parameters, measured
latency or file size). Each is registered with the config dataclass of its knobs.
"""
from .base import (POLICIES, Allocation, Policy, Target, get_policy, list_policies, register_policy,
                   select_kept)
from . import uniform  # noqa: F401
from .global_threshold import GlobalConfig
from . import width  # noqa: F401
from .srr import SRRConfig, srr_redundancy
from .auto import AutoConfig

__all__ = ["POLICIES", "Allocation", "AutoConfig", "GlobalConfig", "Policy", "SRRConfig", "Target", "get_policy",
           "list_policies", "register_policy", "select_kept", "srr_redundancy"]
