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
        A JSON-able dict.
    """
    if not is_hf_model(model):
        raise TypeError(f"describe: {type(model).__name__} is not a transformers PreTrainedModel")
    spec = getattr(model, "_prunekit_spec", None)
    if isinstance(spec, HFSpec):
        return spec.to_dict()
    return HFSpec(type(model).__name__, _config_dict(model.config)).to_dict()


def build(desc: dict[str, Any]) -> nn.Module:
    """Build the (unpruned, randomly initialised) model a `describe` dict names.

    Only classes that transformers exports are resolved, from a config whose `model_type` transformers knows;
    configs asking for remote code are refused.

    Example:
        >>> model = build(describe(original))
    """
    import transformers
    from transformers import AutoConfig, PreTrainedModel

    name = desc.get("class")
    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel)):
        raise ValueError(f"build: {name!r} is not a model class exported by transformers")
    cfg = dict(desc.get("config") or {})
    if "auto_map" in cfg or "trust_remote_code" in cfg:
        raise ValueError("build: the config asks for remote code (auto_map / trust_remote_code); refused")
    model_type = cfg.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ValueError("build: the description's config has no 'model_type'")
    return cls(AutoConfig.for_model(model_type, **cfg))


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
        if hf_model is model and getattr(model, "_prunekit_spec", None) is None:
            object.__setattr__(model, "_prunekit_spec", HFSpec(type(model).__name__, _config_dict(model.config)))
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
