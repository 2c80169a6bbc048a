"""How prunekit reads and patches transformers' own module types: attention (head counts, head sizes, kv
heads, fused widths), GPT-2's `Conv1D` (weight (in, out)), feed-forward blocks and mixture-of-experts modules
that keep their widths as attributes."""
from __future__ import annotations

import sys

import torch
from torch import nn

from ..surgery.patches import register_patch, registered

Q_NAMES = ("q_proj", "query", "q", "q_lin", "q_attn")
K_NAMES = ("k_proj", "key", "k", "k_lin")
V_NAMES = ("v_proj", "value", "v", "v_lin")
HEADS_NAMES = ("num_heads", "n_heads", "num_attention_heads", "n_head")
KV_NAMES = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")
HEAD_SIZE_NAMES = ("head_dim", "attention_head_size", "key_value_proj_dim", "head_size", "d_kv")
INNER_NAMES = ("all_head_size", "inner_dim")
# first layer of a feed-forward block: its output width is the config's intermediate size
FFN_IN = ("gate_proj", "up_proj", "c_fc", "wi", "wi_0", "wi_1", "fc1", "lin1", "dense_h_to_4h", "w1", "w3")


def uses_transformers(model: nn.Module) -> bool:
    """Whether any module of `model` comes from transformers (the model itself or a wrapper around one)."""
    return "transformers" in sys.modules and any(type(m).__module__.startswith("transformers.")
                                                 for m in model.modules())


def is_hf_model(model: nn.Module) -> bool:
    """Whether `model` is a transformers `PreTrainedModel` (without importing transformers)."""
    tf = sys.modules.get("transformers")
    return tf is not None and isinstance(model, tf.PreTrainedModel)



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

