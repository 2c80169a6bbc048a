"""Channel importance scores. A criterion maps every prunable group to one score per channel (higher = keep).

Register new ones with ``@register_criterion("name")``; select them by name with ``get_criterion``.
"""
from __future__ import annotations

from typing import Callable

from .base import CRITERIA, Criterion, get_criterion, list_criteria, register_criterion
from . import magnitude  # noqa: F401  (registers l1, l2, random)

__all__ = ["CRITERIA", "Criterion", "get_criterion", "list_criteria", "register_criterion"]
