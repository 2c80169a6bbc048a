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

import copy
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .hf_zoo import HFCase, extended_zoo, tiny_zoo, zoo_case  # noqa: F401 - re-exported: the engine's HF test sets

ORIGINAL_ATTR = "_prunekit_hf_original"  # {"class", "config"} of the unpruned model
STATUS_ATTR = "_prunekit_hf_status"

Q_NAMES = ("q_proj", "query", "q", "q_lin", "q_attn")
K_NAMES = ("k_proj", "key", "k", "k_lin")
V_NAMES = ("v_proj", "value", "v", "v_lin")
HEADS_NAMES = ("num_heads", "n_heads", "num_attention_heads", "n_head")
KV_NAMES = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")
HEAD_SIZE_NAMES = ("head_dim", "attention_head_size", "key_value_proj_dim", "head_size", "d_kv")
INNER_NAMES = ("all_head_size", "inner_dim")
# first layer of a feed-forward block: its output width is the config's intermediate size
FFN_IN = ("gate_proj", "up_proj", "c_fc", "wi", "wi_0", "wi_1", "fc1", "lin1", "dense_h_to_4h", "w1", "w3")


def is_hf_model(model: nn.Module) -> bool:
    """Whether `model` is a transformers `PreTrainedModel` (without importing transformers)."""
    tf = sys.modules.get("transformers")
    return tf is not None and isinstance(model, tf.PreTrainedModel)


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


# ---------------------------------------------------------------- attribute patches
def _conv1d(mod: nn.Module, ctx) -> None:
    """GPT-2's Conv1D keeps weight as (in, out) and reshapes its output with `nf`."""
    mod.nx, mod.nf = mod.weight.shape


def _transposed(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D"  # transformers' Conv1D: weight (in, out)


def _width_out(m: nn.Module) -> int:
    """Output width from the weight itself: patches of parents run before those of their children."""
    return int(m.weight.shape[1 if _transposed(m) else 0])


def _width_in(m: nn.Module) -> int:
    return int(m.weight.shape[0 if _transposed(m) else 1])


def _child(mod: nn.Module, names) -> nn.Module | None:
    for n in names:
        c = getattr(mod, n, None)
        if isinstance(c, nn.Module) and hasattr(c, "weight"):
            return c
    return None


def _projections(mod: nn.Module) -> tuple[int, int, int] | None:
    """(q width, kv width, input width) of an attention module, from its projections."""
    q, k = _child(mod, Q_NAMES), _child(mod, K_NAMES)
    if q is not None and k is not None:
        return _width_out(q), _width_out(k), _width_in(q)
    fused = _child(mod, ("c_attn",))  # GPT-2: one Conv1D producing q, k and v
    if fused is not None and getattr(mod, "q_attn", None) is None:
        inner = _width_out(fused) // 3
        return inner, inner, _width_in(fused)
    return None


def _first_int(obj, names) -> tuple[str, int] | None:
    for n in names:
        v = getattr(obj, n, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return n, v
    return None


def _attention(mod: nn.Module, ctx) -> None:
    """Head counts and sizes of an HF attention module from its (sliced) projections.

    A pruned head_dim comes from the view the trace recorded in the module ("split"); otherwise head_dim
    stays and the head counts follow the widths (whole heads removed, kv groups included). The attention scale
    (`scaling`) is left as it was: the pruned model computes what the original computes with the removed
    channels zeroed.
    """
    widths = _projections(mod)
    if widths is None:
        return
    q_w, kv_w, in_w = widths
    heads = _first_int(mod, HEADS_NAMES)
    size = _first_int(mod, HEAD_SIZE_NAMES)
    kv = _first_int(mod, KV_NAMES)
    views = [p for p in ctx.splits if p["module"] == ctx.name]
    split = next((p for p in views if p.get("kind") == "split"), None)
    if split is not None:  # head_dim was pruned: the view recorded its new size
        new_size = split["new"]
    elif size is not None:  # whole heads went, or only the widths around the heads changed
        new_size = size[1]
    elif heads is not None:  # the module derives head_dim from its width and head count
        h = next((p["new"] for p in views if p.get("kind") == "heads" and p["old"] == heads[1]), heads[1])
        new_size = q_w // h
    else:
        return
    if size is not None:
        setattr(mod, size[0], new_size)
    n_heads = q_w // new_size
    if heads is not None:
        setattr(mod, heads[0], n_heads)
    if kv is not None:
        setattr(mod, kv[0], kv_w // new_size)
    if isinstance(getattr(mod, "num_key_value_groups", None), int):
        mod.num_key_value_groups = n_heads // max(1, kv_w // new_size)
    for n in INNER_NAMES:
        if isinstance(getattr(mod, n, None), int):
            setattr(mod, n, q_w)
    if isinstance(getattr(mod, "split_size", None), int):  # GPT-2 splits the fused q/k/v output by this
        mod.split_size = q_w
    for n in ("embed_dim", "d_model", "dim"):  # the width attention reads from and writes back to
        if isinstance(getattr(mod, n, None), int):
            setattr(mod, n, in_w)


FFN_ATTRS = ("intermediate_size", "ffn_dim", "d_ff", "hidden_dim")


def _ffn_child(mod: nn.Module) -> nn.Module | None:
    return _child(mod, FFN_IN)


def _feed_forward(mod: nn.Module, ctx) -> None:
    """Widths a feed-forward block keeps as attributes (Llama's MLP: hidden_size, intermediate_size)."""
    first = _ffn_child(mod)
    if first is None:
        return
    for n in FFN_ATTRS:
        if isinstance(getattr(mod, n, None), int):
            setattr(mod, n, _width_out(first))
    if isinstance(getattr(mod, "hidden_size", None), int):
        mod.hidden_size = _width_in(first)


def _expert_widths(mod: nn.Module) -> tuple[int, int] | None:
    """(intermediate, hidden) of a mixture-of-experts module keeping 3-D weights (experts, out, in)."""
    down = mod._parameters.get("down_proj") if isinstance(getattr(mod, "_parameters", None), dict) else None
    if not isinstance(down, torch.Tensor) or down.dim() != 3:
        return None
    if getattr(mod, "is_transposed", False):  # (experts, in, out)
        return int(down.shape[1]), int(down.shape[2])
    return int(down.shape[2]), int(down.shape[1])


def _experts(mod: nn.Module, ctx) -> None:
    """Widths a mixture-of-experts module keeps as attributes (Mixtral: intermediate_dim, hidden_dim)."""
    inter, hidden = _expert_widths(mod)
    for n in ("intermediate_dim", "intermediate_size", "expert_dim"):
        if isinstance(getattr(mod, n, None), int):
            setattr(mod, n, inter)
    for n in ("hidden_dim", "hidden_size"):
        if isinstance(getattr(mod, n, None), int):
            setattr(mod, n, hidden)


def _looks_like_ffn(mod: nn.Module) -> bool:
    return _ffn_child(mod) is not None and any(isinstance(getattr(mod, n, None), int)
                                               for n in FFN_ATTRS + ("hidden_size",))


def _looks_like_attention(mod: nn.Module) -> bool:
    name = type(mod).__name__
    return ("Attention" in name or "Attn" in name) and _projections(mod) is not None


def register_patches(model: nn.Module) -> None:
    """Register (once per type) the patches for the HF module types found in `model`.

    A type that already has a patch of its own (a user's, or prunekit's for its exact class) keeps it.
    """
    from transformers.pytorch_utils import Conv1D

    from ..surgery.patches import register_patch, registered

    table = registered()
    if Conv1D not in table:
        register_patch(Conv1D, _conv1d, builtin=True)
    for mod in model.modules():
        t = type(mod)
        if t in table or not t.__module__.startswith("transformers."):
            continue
        fn = (_attention if _looks_like_attention(mod) else _feed_forward if _looks_like_ffn(mod)
              else _experts if _expert_widths(mod) is not None else None)
        if fn is not None:
            register_patch(t, fn)
            table[t] = fn


# ---------------------------------------------------------------- config after pruning
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


def after_apply(model: nn.Module) -> None:
    """`pk.apply`'s last step on an HF model: remember the original config (for pk.save), update the config."""
    if getattr(model, "_prunekit_spec", None) is None:
        object.__setattr__(model, "_prunekit_spec", HFSpec(type(model).__name__, _config_dict(model.config)))
    changed = dict(getattr(model, STATUS_ATTR, {}))
    changed.update(update_config(model))
    object.__setattr__(model, STATUS_ATTR, changed)
