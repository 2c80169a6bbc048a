"""Channel importance scores. A criterion maps every prunable group to one score per channel (higher = keep).

Register new ones with ``@register_criterion("name")``; select them by name with ``get_criterion``.
Data-free: l1, l2, random, bn_scale, fpgm. Data-driven (pass ``data=`` a loader or list of batches and
``batches=`` a limit): taylor, apoz, mean_activation, hrank, obd.
"""
from __future__ import annotations

from .base import (CRITERIA, Criterion, CriterionConfig, DataCriterionConfig, criterion_options, get_criterion,
                   list_criteria, register_criterion)
from . import magnitude  # noqa: F401  (registers l1, l2, random)
from . import structural  # noqa: F401  (registers bn_scale, fpgm)
from . import data_driven  # noqa: F401  (registers taylor, apoz, mean_activation, hrank, obd)
from .activations import ActivationRecorder, group_sites, record

__all__ = ["CRITERIA", "ActivationRecorder", "Criterion", "CriterionConfig", "DataCriterionConfig",
           "criterion_options", "get_criterion", "group_sites", "list_criteria", "record", "register_criterion"]
