"""The pruned HF model's config: measure the widths, set the fields that hold across layers, and check that
the config rebuilds the pruned model exactly (then `save_pretrained` + `from_pretrained` reload it)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .hf_modules import (FFN_IN, HEAD_SIZE_NAMES, HEADS_NAMES, K_NAMES, _child, _expert_widths, _first_int,
                         _looks_like_attention, _projections, _width_out, is_hf_model)

STATUS_ATTR = "_prunekit_hf_status"  # the config fields prunekit set, accumulated over applies


@dataclass
class ConfigStatus:
    """Whether the pruned model's config rebuilds it exactly.

    reloadable: `type(model)(model.config)` has the pruned model's shapes and attributes, so
        `save_pretrained` + `from_pretrained` give the same model. differences: what does not match
        (widths that vary across layers, a head size the config cannot express, ...).
    """

    reloadable: bool
    updated: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.reloadable:
            return f"config updated ({self.updated}); save_pretrained/from_pretrained reload the pruned model"
        return ("config cannot describe the pruned model (" + "; ".join(self.differences[:4]) +
                "); save with pk.save and load with pk.load")


def _uniform(values: list[int]) -> int | None:
    return values[0] if values and all(v == values[0] for v in values) else None


def _leaf(name: str) -> tuple[str, str]:
    parent, _, leaf = name.rpartition(".")
    return parent, leaf


def measure(model: nn.Module) -> dict[str, list[int]]:
    """The widths a config describes, per layer: hidden, heads, kv heads, head size and feed-forward width,
    the last three also split into encoder/decoder lists for encoder-decoder configs."""
    out: dict[str, list[int]] = {}

    def add(key: str, path: str, value: int | None) -> None:
        if value is None:
            return
        out.setdefault(key, []).append(int(value))
        part = "encoder" if ".encoder." in f".{path}." else "decoder" if ".decoder." in f".{path}." else None
        if part:
            out.setdefault(f"{part}_{key}", []).append(int(value))

    mods = dict(model.named_modules())
    for name, mod in mods.items():
        if _looks_like_attention(mod):
            q_w, kv_w, in_w = _projections(mod)
            size = _first_int(mod, HEAD_SIZE_NAMES)
            heads = _first_int(mod, HEADS_NAMES)
            d = size[1] if size else (q_w // heads[1] if heads else None)
            add("hidden", name, in_w)
            if d:
                add("heads", name, q_w // d)
                add("head_dim", name, d)
                if _child(mod, K_NAMES) is not None and ("cross" not in name.lower() and "EncDec" not in name):
                    add("kv_heads", name, kv_w // d)
            continue
        experts = _expert_widths(mod)
        if experts is not None:
            add("ffn", name, experts[0])
            continue
        parent, leaf = _leaf(name)
        if not hasattr(mod, "weight") or not isinstance(getattr(mod, "weight"), torch.Tensor):
            continue
        if _looks_like_attention(mods.get(parent, model)):
            continue
        if leaf in FFN_IN or (leaf == "dense" and _leaf(parent)[1] == "intermediate"):
            if leaf in ("up_proj", "wi_1", "w3") and any(n in mods for n in (f"{parent}.gate_proj", f"{parent}.wi_0",
                                                                               f"{parent}.w1")):
                continue  # gated: the gate and the up projection have one width
            add("ffn", name, _width_out(mod))
    try:
        emb = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):  # vision models have none
        emb = None
    if isinstance(emb, nn.Embedding):
        out.setdefault("embedding", []).append(int(emb.weight.shape[1]))
    return out


# config field -> the measured widths it must equal (fields are set only where the config has them)
FIELDS = [("hidden_size", "hidden"), ("num_attention_heads", "heads"), ("num_key_value_heads", "kv_heads"),
          ("head_dim", "head_dim"), ("d_kv", "head_dim"), ("intermediate_size", "ffn"), ("d_ff", "ffn"),
          ("n_inner", "ffn"), ("ffn_dim", "ffn"), ("encoder_attention_heads", "encoder_heads"),
          ("decoder_attention_heads", "decoder_heads"), ("encoder_ffn_dim", "encoder_ffn"),
          ("decoder_ffn_dim", "decoder_ffn"), ("word_embed_proj_dim", "embedding")]
MODEL_FIELDS = {"distilbert": [("hidden_dim", "ffn")]}  # names that mean another width elsewhere


def _candidate(config, widths: dict[str, list[int]]) -> tuple[Any, dict[str, Any]]:
    cfg = copy.deepcopy(config)
    changed: dict[str, Any] = {}
    for name, key in FIELDS + MODEL_FIELDS.get(getattr(config, "model_type", ""), []):
        value = _uniform(widths.get(key, []))
        present = getattr(cfg, name, None) is not None
        if name == "head_dim" and value is not None:
            present = True  # attention modules that find config.head_dim use it (ViT, Qwen2); others ignore it
        if value is None or not present or getattr(cfg, name, None) == value:
            continue
        setattr(cfg, name, value)
        changed[name] = value
    return cfg, changed


def _rebuild_differences(model: nn.Module, cfg) -> list[str]:
    """What differs between `model` and its architecture built from `cfg` (on the meta device)."""
    try:
        if hasattr(cfg, "validate"):  # save_pretrained validates the config first (Llama: hidden % heads == 0)
            cfg.validate()
        with torch.device("meta"):
            rebuilt = type(model)(cfg)
    except Exception as e:  # noqa: BLE001 - the architecture rejects the config (e.g. hidden % heads != 0)
        why = str(e).strip().splitlines()[-1].strip() if str(e).strip() else ""
        return [f"{type(model).__name__} does not accept it ({type(e).__name__}: {why})"]
    return _differences(model, rebuilt)


def _differences(pruned: nn.Module, rebuilt: nn.Module, limit: int = 8) -> list[str]:
    """Tensor shapes and plain module attributes that differ between the pruned model and the rebuild."""
    diffs = []
    a, b = pruned.state_dict(), rebuilt.state_dict()
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            diffs.append(f"{k}: only in {'the pruned model' if k in a else 'the rebuild'}")
        elif tuple(a[k].shape) != tuple(b[k].shape):
            diffs.append(f"{k}: pruned {tuple(a[k].shape)}, config gives {tuple(b[k].shape)}")
        if len(diffs) >= limit:
            return diffs
    others = dict(rebuilt.named_modules())
    for name, mod in pruned.named_modules():
        twin = others.get(name)
        if twin is None:
            continue
        for attr, v in vars(mod).items():
            if attr.startswith("_") or attr == "training" or not isinstance(v, (int, float, tuple)):
                continue
            w = getattr(twin, attr, None)
            if w != v:
                diffs.append(f"{name or 'model'}.{attr}: pruned {v}, config gives {w}")
                if len(diffs) >= limit:
                    return diffs
    return diffs


def update_config(model: nn.Module) -> dict[str, Any]:
    """Set the pruned model's config fields that have one value across layers; returns what changed."""
    widths = measure(model)
    cfg, changed = _candidate(model.config, widths)
    old_hidden, new_hidden = getattr(model.config, "hidden_size", None), _uniform(widths.get("hidden", []))
    if isinstance(old_hidden, int) and new_hidden is not None and new_hidden != old_hidden:
        # layers that copied the residual width from the config (Llama's decoder layer: hidden_size)
        for mod in model.modules():
            if type(mod).__module__.startswith("transformers.") and not _looks_like_attention(mod):
                for n in ("hidden_size", "embed_dim", "d_model"):
                    if getattr(mod, n, None) == old_hidden and not isinstance(getattr(mod, n), bool):
                        setattr(mod, n, new_hidden)
                if getattr(mod, "weight", None) is None and tuple(getattr(mod, "normalized_shape", ())) == (old_hidden,):
                    mod.normalized_shape = (new_hidden,)  # a norm without parameters (OLMo): nothing was sliced
    for name, value in changed.items():
        setattr(model.config, name, value)
    return changed


def config_status(model: nn.Module) -> ConfigStatus:
    """Whether `model.config` rebuilds the pruned model exactly (so `save_pretrained` works).

    Validates the config as `save_pretrained` does, builds the architecture from it on the meta device and
    compares every tensor shape and plain module attribute (head sizes, attention scale, ...).

    Returns:
        ConfigStatus (reloadable, the fields prunekit set, what still differs).

    Example:
        >>> pk.apply(model, plan)
        >>> if hf.config_status(model).reloadable:
        ...     model.save_pretrained(folder)
    """
    if not is_hf_model(model):
        raise TypeError(f"config_status: {type(model).__name__} is not a transformers PreTrainedModel")
    updated = dict(getattr(model, STATUS_ATTR, {}))
    diffs = _rebuild_differences(model, model.config)
    return ConfigStatus(reloadable=not diffs, updated=updated, differences=diffs)

