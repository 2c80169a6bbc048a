"""Hugging Face transformers glue for the pruning engine.

- Attribute patches for transformers' own module types: GPT-2's `Conv1D` (weight stored (in, out)) and every
  attention module (head counts, head sizes, grouped kv heads, fused widths such as GPT-2's `split_size`).
- After `pk.apply`, the model's `config` is brought in line with the new widths (hidden size, heads, kv heads,
  head_dim / d_kv, intermediate sizes). The new config is checked by building the architecture from it on
  the meta device: when every tensor shape and module attribute matches the pruned model (uniform widths
  across layers), `save_pretrained` + `from_pretrained` reload it unchanged; otherwise `config_status(model)`
  says what differs and `pk.save` / `pk.load` (which replay the plans on the original config) is the way.
- `describe` / `build`: the JSON description of an HF model (class name + original config dict) that
  `pk.save` stores, and the inverse, resolving only classes transformers itself exports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..models import spec_of
from ..models.registry import SPEC_ATTR
from ..models.resolve import build_arch, describe_arch
from .hf_config import STATUS_ATTR, ConfigStatus, config_status, measure, update_config  # noqa: F401
from ..surgery.patches import register_model_hooks
from .hf_modules import is_hf_model, register_patches, uses_transformers
from .hf_zoo import HFCase, extended_zoo, tiny_zoo, zoo_case  # noqa: F401 - re-exported: the engine's HF test sets


# ---------------------------------------------------------------- description for pk.save / pk.load
@dataclass
class HFSpec:
    """How to rebuild the unpruned model: a class transformers exports and its original config."""

    class_name: str
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"library": "transformers", "class": self.class_name, "config": self.config}


def _config_dict(config) -> dict[str, Any]:
    return json.loads(config.to_json_string(use_diff=False))


def describe(model: nn.Module) -> dict[str, Any]:
    """The description `pk.save` stores for an HF model: {"library": "transformers", "class", "config"}.

    Args:
        model: a transformers model, pruned or not; a pruned one is described by its original config (the
            plans `pk.save` records are replayed on it).

    Returns:
        A JSON-able dict (prunekit.models.resolve.describe_arch's, the one description path).
    """
    desc = describe_arch(model) if is_hf_model(model) else None
    if desc is None or desc.get("library") != "transformers":
        raise TypeError(f"describe: {type(model).__name__} is not a PreTrainedModel class transformers exports")
    return desc


def build(desc: dict[str, Any]) -> nn.Module:
    """Build the (unpruned, randomly initialised) model a `describe` dict names, through the allow-listed
    resolver `pk.load` uses (prunekit.models.resolve.build_arch): only classes transformers exports, from a
    config whose `model_type` transformers knows; configs asking for remote code are refused (ModelFileError).

    Example:
        >>> model = build(describe(original))
    """
    if not isinstance(desc, dict):
        raise TypeError(f"build: a description is a dict, got {type(desc).__name__}")
    return build_arch({**desc, "library": "transformers"}, source="hf.build")


def before_apply(model: nn.Module) -> None:
    """`pk.apply`, after slicing: register the patches for the transformers module types in `model`."""
    if uses_transformers(model):
        register_patches(model)


def after_apply(model: nn.Module) -> None:
    """`pk.apply`'s last step on a model holding HF models (itself, or wrapped): for each outermost
    `PreTrainedModel`, remember the original config (what pk.save stores) and update the config."""
    if not uses_transformers(model):
        return
    for hf_model in _outermost_hf_models(model):
        if hf_model is model and spec_of(model) is None:
            object.__setattr__(model, SPEC_ATTR, HFSpec(type(model).__name__, _config_dict(model.config)))
        changed = dict(getattr(hf_model, STATUS_ATTR, {}))
        changed.update(update_config(hf_model))
        object.__setattr__(hf_model, STATUS_ATTR, changed)


def _outermost_hf_models(model: nn.Module) -> list[nn.Module]:
    found: list[tuple[str, nn.Module]] = []
    for name, mod in model.named_modules():
        if is_hf_model(mod) and not any(name.startswith(f"{outer}.") or not outer for outer, _ in found):
            found.append((name, mod))
    return [m for _, m in found]


register_model_hooks(before_apply, after_apply)
