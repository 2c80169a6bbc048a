"""Error types every layer can raise without importing the layer that defines the format."""
from __future__ import annotations

import re


class ModelFileError(ValueError):
    """A file that is not a valid prunekit file (model, checkpoint, container), is corrupted or truncated, or
    does not fit the model it is loaded into. The message names the file and what is wrong."""


def plain_text(exc: BaseException) -> str:
    """The exception's message without ANSI colour codes (torch and transformers colour some of theirs)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc))


def pickled_globals(exc: BaseException) -> str:
    """" (mod.name, ...)": the globals torch's weights_only unpickler refused, as its message names them (ANSI
    colour codes removed); "" when it names none."""
    text = plain_text(exc)
    names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text)))
    return f" ({', '.join(names)})" if names else ""


class PlanFormatError(ValueError):
    """A pruning plan (JSON text, dict or file) that does not follow the plan schema (docs/plan-format.md).
    The message names the offending field."""


class PlanMismatchError(ValueError):
    """The plan does not fit this model (another architecture, or already pruned)."""
