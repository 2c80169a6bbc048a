"""Error types every layer can raise without importing the layer that defines the format."""
from __future__ import annotations


class ModelFileError(ValueError):
    """A file that is not a valid prunekit file (model, checkpoint, container), is corrupted or truncated, or
    does not fit the model it is loaded into. The message names the file and what is wrong."""


class PlanFormatError(ValueError):
    """A pruning plan (JSON text, dict or file) that does not follow the plan schema (docs/plan-format.md).
    The message names the offending field."""


class PlanMismatchError(ValueError):
    """The plan does not fit this model (another architecture, or already pruned)."""
