"""nn.LSTM, nn.GRU and nn.RNN as one traced op each: their hidden units as channels.

The ATen ops inside a recurrent module (``mkldnn_rnn_layer``, ``unsafe_split``, per-step gates) hide the
structure, so the tracer pauses inside the module and this rule couples its tensors directly:

- hidden unit j of layer l, direction d is row j of every gate block of ``weight_ih``/``weight_hh`` and the
  biases, and column j of ``weight_hh`` (the recurrence);
- one ``hidden_size`` serves every layer and direction (and ``h_n``/``c_n`` stack them), so unit j is one
  channel across all of them: the count stays uniform and `apply` sets ``hidden_size`` once;
- the next layer's input columns are the concatenation [forward units, reverse units], as is the output;
- with ``proj_size`` the projected units (rows of ``weight_hr``, columns of ``weight_hh``, the output, ``h``)
  form a second channel set, and the hidden units live in ``weight_hr``'s columns and ``c``.

Zeroing unit j's rows and columns keeps its state at zero from a zero (or equally pruned) initial state, for
every gate kind (sigmoid(0) * tanh(0) = 0, GRU's z * 0 + (1 - z) * 0), so pruning is exact.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .rules import _tensors, dim_labels, placed

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _data(t):
    return t.data if isinstance(t, PackedSequence) else t


def _fresh(uf, n: int) -> torch.Tensor:
    start = uf.new(n)
    return torch.arange(start, start + n, dtype=torch.int64)


def _param_labels(ctx, mod: nn.RNNBase, name: str, dim: int) -> torch.Tensor | None:
    t = getattr(mod, name, None)
    if not isinstance(t, torch.Tensor) or not ctx.get(t):
        return None
    return dim_labels(ctx, t, dim)


RECURRENT = (nn.RNNBase, nn.RNNCellBase)
CELL_GATES = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}


def _layout(mod: nn.Module) -> tuple[int, int, int, int, list[str]]:
    """(gates, proj_size, layers, directions, parameter-name suffixes per layer and direction)."""
    if isinstance(mod, nn.RNNCellBase):
        gates = next((g for t, g in CELL_GATES.items() if isinstance(mod, t)), None)
        return gates, 0, 1, 1, [""]
    dirs = 2 if mod.bidirectional else 1
    sfx = [f"_l{layer}" + ("_reverse" if d else "") for layer in range(mod.num_layers) for d in range(dirs)]
    return GATES.get(mod.mode), mod.proj_size, mod.num_layers, dirs, sfx


def _couple(ctx, mod: nn.Module, sfx: str, gates: int, units, proj, inputs) -> None:
    """One layer and direction: gate rows and biases are the hidden units, weight_hh's columns what h carries
    (the projection, if any), weight_ih's columns the layer's input."""
    uf = ctx.uf
    H = units.numel()
    for name in (f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"):
        rows = _param_labels(ctx, mod, name, 0)
        if rows is not None:
            uf.union_pairs(rows.reshape(gates, H), units.expand(gates, H))
            if name.startswith("weight"):
                uf.mark_produced(rows)
    carried = proj if proj is not None else units
    cols = _param_labels(ctx, mod, f"weight_hh{sfx}", 1)
    if cols is not None:
        uf.union_pairs(cols, carried)
    if proj is not None:
        rows = _param_labels(ctx, mod, f"weight_hr{sfx}", 0)
        uf.union_pairs(rows, proj)
        uf.mark_produced(rows)
        uf.union_pairs(_param_labels(ctx, mod, f"weight_hr{sfx}", 1), units)
    cols = _param_labels(ctx, mod, f"weight_ih{sfx}", 1)
    if cols is not None:
        uf.union_pairs(cols, inputs)


def rnn_rule(ctx, mod: nn.Module, args: tuple, kwargs: dict, output) -> None:
    """Couple the module's hidden units as described above; label its outputs."""
    gates, P, _layers, dirs, suffixes = _layout(mod)
    if gates is None:
        raise ctx.error(f"{type(mod).__name__}", "unknown recurrent cell kind (LSTM, GRU, RNN and their cells "
                                                 "are supported)")
    uf = ctx.uf
    units = _fresh(uf, mod.hidden_size)  # stand-ins unioned with every layer's and direction's hidden units
    proj = _fresh(uf, P) if P > 0 else None
    carried = proj if proj is not None else units  # what h, the output and the next layer carry
    x = _data(args[0] if args else kwargs.get("input"))
    xin = dim_labels(ctx, x, -1, mod.input_size)
    steps = float(x.numel() // max(1, x.shape[-1]))
    for i, sfx in enumerate(suffixes):
        _couple(ctx, mod, sfx, gates, units, proj, xin if i < dirs else carried.repeat(dirs))
        for w in (getattr(mod, f"weight_ih{sfx}"), getattr(mod, f"weight_hh{sfx}")):
            ctx.add_macs(w, steps * w.numel())
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    states = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    for i, h in enumerate(states):  # an initial state from another module (an encoder) shares its units
        if isinstance(h, torch.Tensor) and ctx.get(h):
            uf.union_pairs(dim_labels(ctx, h, -1), units if i == 1 else carried)
    if isinstance(mod, nn.RNNCellBase):  # h' (and c' for LSTMCell): the hidden units
        state = output
    else:
        out, state = output
        seq = _data(out)
        ctx.set(seq, [placed(carried.repeat(dirs), seq.dim(), -1)])
    for i, h in enumerate(_tensors(state)):
        ctx.set(h, [placed(units if i == 1 else carried, h.dim(), -1)])


def rnn_patch(mod: nn.Module, ctx) -> None:
    """After slicing: the widths the weights now have, and the flat weight list cuDNN/mkldnn read."""
    gates, proj, _, _, suffixes = _layout(mod)
    mod.hidden_size = getattr(mod, f"weight_hh{suffixes[0]}").shape[0] // gates
    mod.input_size = getattr(mod, f"weight_ih{suffixes[0]}").shape[1]
    if isinstance(mod, nn.RNNCellBase):
        return
    if proj > 0:
        mod.proj_size = mod.weight_hr_l0.shape[0]
    mod._init_flat_weights()
    if all(t.is_cuda for t in mod._flat_weights):
        mod.flatten_parameters()
