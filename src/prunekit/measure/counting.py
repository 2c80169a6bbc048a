"""Parameter and MAC counting.

MACs (multiply-accumulates) are counted from the operations actually executed in one forward pass, with
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2 = MACs). Counted: convolutions (incl. grouped,
depthwise and transposed), linear layers (``mm``/``addmm``), ``bmm``/``matmul``/``einsum`` (which lower to
``mm``/``bmm``), ``mv``/``dot`` and scaled-dot-product attention, including the CPU kernel and the fused
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` fast paths and oneDNN's LSTM layer
(``mkldnn_rnn_layer``) that torch's own table misses; GRU and plain RNN layers lower to ``addmm``.
Not counted, by convention: bias additions, normalisation (BatchNorm, LayerNorm), activations, pooling,
element-wise additions and softmax. They are cheap next to the products above and every paper we compare to
leaves them out too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .inputs import Inputs, call_model, model_device, to_device

aten = torch.ops.aten


@dataclass(frozen=True)
class Counts:
    """Model size and cost: ``params`` (parameter elements) and ``macs`` (per forward of the example inputs).

    Unpacks like a pair: ``params, macs = pk.count(model, x)``.
    """

    params: int
    macs: int
    nonzero_params: int = 0
    macs_by_op: dict[str, int] = field(default_factory=dict)

    def __iter__(self):
        yield self.params
        yield self.macs

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs, "nonzero_params": self.nonzero_params,
                "macs_by_op": dict(self.macs_by_op)}


def _attention_flops(b_h: int, s_q: int, s_k: int, d_qk: int, d_v: int) -> int:
    """FLOPs of softmax(Q K^T) V for ``b_h`` (batch x heads) independent heads."""
    return 2 * b_h * s_q * s_k * d_qk + 2 * b_h * s_q * s_k * d_v


def _sdpa_cpu_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    """The CPU fused SDPA kernel (``_scaled_dot_product_flash_attention_for_cpu``): Q K^T plus P V."""
    *batch, s_q, d_qk = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return _attention_flops(prod(batch), s_q, s_k, d_qk, d_v)


def _mv_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmv_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


def _native_mha_flop(q_shape, k_shape, v_shape, embed_dim, num_heads, *args, out_shape=None, **kwargs) -> int:
    """``nn.MultiheadAttention``'s inference fast path (batch-first): in-projections, attention, out-projection."""
    e = int(embed_dim)
    tokens_q, tokens_k = prod(q_shape[:-1]), prod(k_shape[:-1])
    batch = prod(q_shape[:-2]) if len(q_shape) > 2 else 1
    s_q, s_k = q_shape[-2], k_shape[-2]
    proj = 2 * e * e * (tokens_q + 2 * tokens_k + tokens_q)
    return proj + _attention_flops(batch * int(num_heads), s_q, s_k, e // int(num_heads), e // int(num_heads))


def _encoder_layer_flop(src_shape, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first,
                        eps, n1w, n1b, n2w, n2b, ffn_w1, ffn_b1, ffn_w2, ffn_b2, *args, out_shape=None,
                        **kwargs) -> int:
    """``nn.TransformerEncoderLayer``'s inference fast path: self-attention block plus the two FFN linears."""
    attention = _native_mha_flop(src_shape, src_shape, src_shape, embed_dim, num_heads)
    tokens = prod(src_shape[:-1])
    return attention + 2 * tokens * (prod(ffn_w1) + prod(ffn_w2))


def _mkldnn_rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """One layer and direction of an LSTM as oneDNN runs it on CPU (``mkldnn_rnn_layer``): every time step
    multiplies the input by W_ih and the hidden state by W_hh (all gates stacked in their rows)."""
    return 2 * prod(input_shape[:-1]) * (prod(w_ih_shape) + prod(w_hh_shape))


def _extra_formulas() -> dict[Any, Any]:
    """Formulas for ops this torch's FlopCounterMode does not know (looked up by name, skipped if absent)."""
    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flop,
        "mv": _mv_flop,
        "addmv": _addmv_flop,
        "dot": _dot_flop,
        "vdot": _dot_flop,
        "_native_multi_head_attention": _native_mha_flop,
        "_transformer_encoder_layer_fwd": _encoder_layer_flop,
        "mkldnn_rnn_layer": _mkldnn_rnn_layer_flop,
    }
    known = FlopCounterMode(display=False).flop_registry
    table = {}
    for name, fn in wanted.items():
        packet = getattr(aten, name, None)
        if packet is not None and packet not in known:
            table[packet] = fn
    return table


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameter elements (each shared tensor once); ``nonzero=True`` counts only non-zero ones."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += int(torch.count_nonzero(p).item()) if nonzero else p.numel()
    return total


def count_macs(model: nn.Module, example_inputs: Inputs, by_op: bool = False) -> int | tuple[int, dict[str, int]]:
    """MACs of one forward pass on ``example_inputs``, counted from the executed ops.

    The model runs in eval mode (restored afterwards) so BatchNorm statistics are not touched, with autograd
    enabled so that PyTorch takes its ordinary (countable) kernels rather than fused inference fast paths.
    """
    was_training = model.training
    inputs = to_device(example_inputs, model_device(model))
    counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
    model.eval()
    try:
        with torch.enable_grad(), counter:
            call_model(model, inputs)
    finally:
        model.train(was_training)
    per_op = {str(op).replace("aten.", ""): int(v) // 2
              for op, v in counter.get_flop_counts().get("Global", {}).items()}
    macs = counter.get_total_flops() // 2
    return (macs, per_op) if by_op else macs


def count(model: nn.Module, example_inputs: Inputs) -> Counts:
    """Parameters and MACs of ``model`` for ``example_inputs`` (tensor, tuple, or dict of keyword arguments).

    MACs are counted from the ops one forward pass executes (``torch.utils.flop_counter``), in eval mode.

    Args:
        model: any module (not changed; its train/eval mode is restored).
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.

    Returns:
        Counts: ``params`` (each shared tensor once), ``nonzero_params``, ``macs`` and ``macs_by_op``.

    Example:
        >>> c = pk.count(nn.Linear(10, 4), torch.zeros(1, 10))
        >>> c.params, c.macs
        (44, 40)
    """
    macs, per_op = count_macs(model, example_inputs, by_op=True)
    return Counts(params=count_params(model), macs=macs, nonzero_params=count_params(model, nonzero=True),
                  macs_by_op=per_op)
