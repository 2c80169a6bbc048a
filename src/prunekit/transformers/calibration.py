"""Layer-wise calibration: run calibration batches through a model block by block, collecting per-Linear
input statistics.

The inputs of the first block are captured once (a pre-hook stops the forward there); each block then runs
on the stored inputs of all batches, its ``nn.Linear`` inputs are accumulated by forward hooks, an optional
``on_block`` callback may change the block (prune it), and the block runs again to give the next block's
inputs. Memory is therefore one block's activations for the calibration set, as in SparseGPT and Wanda.

The block list is found generically: the longest ``nn.ModuleList`` whose children share one class (HF
encoders and decoders alike). A model without one is calibrated as a single block. Where the blocks are not
chained (an op between them, such as a residual add outside the block modules), the pass runs full forwards
once per block instead, which is exact for any model at the cost of more compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..utils.inputs import as_call, call_model

Batch = Any  # a tensor, a tuple of positional inputs, or a dict of keyword inputs
LinearFilter = Callable[[nn.Module, str], bool]
Captured = list[tuple[tuple, dict]]


@dataclass
class LinearStats:
    """Running statistics of one Linear layer's inputs, in float64, over ``tokens`` input rows."""

    name: str
    in_features: int
    hessian: bool = False
    tokens: int = 0
    sq_sum: torch.Tensor = field(default=None)  # sum over rows of x_j^2
    sum: torch.Tensor = field(default=None)     # sum over rows of x_j
    xtx: torch.Tensor | None = None             # sum over rows of x x^T (only with hessian=True)

    def __post_init__(self) -> None:
        if self.sq_sum is None:
            self.sq_sum = torch.zeros(self.in_features, dtype=torch.float64)
        if self.sum is None:
            self.sum = torch.zeros(self.in_features, dtype=torch.float64)
        if self.hessian and self.xtx is None:
            self.xtx = torch.zeros(self.in_features, self.in_features, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        """Accumulate the rows of ``x`` (any leading shape, last dim = in_features)."""
        rows = x.detach().reshape(-1, x.shape[-1]).float()
        self.tokens += rows.shape[0]
        self.sq_sum += rows.square().sum(0).to("cpu", torch.float64)
        self.sum += rows.sum(0).to("cpu", torch.float64)
        if self.hessian:  # one batch's product in float32 (fast), the running sum in float64
            self.xtx += (rows.T @ rows).to("cpu", torch.float64)

    @property
    def col_norm(self) -> torch.Tensor:
        """||X_j||_2 over all calibration rows (Wanda's input norm)."""
        return self.sq_sum.sqrt()

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.tokens, 1)

    @property
    def variance(self) -> torch.Tensor:
        """Per-feature variance over rows (FLAP's fluctuation), population form, clamped at 0."""
        return (self.sq_sum / max(self.tokens, 1) - self.mean.square()).clamp_min(0)

    def hessian_matrix(self) -> torch.Tensor:
        """H = 2 X^T X / n (SparseGPT's layer Hessian), float64."""
        if self.xtx is None:
            raise ValueError(f"{self.name}: statistics were collected without hessian=True")
        return 2.0 * self.xtx / max(self.tokens, 1)


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """(qualified name, list) of the longest ``nn.ModuleList`` of at least 2 children of one class; the first
    such list wins ties. None when the model has none."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) < 2:
            continue
        if len({type(c) for c in mod}) != 1:
            continue
        if best is None or len(mod) > len(best[1]):
            best = (name, mod)
    return best


def default_linear_filter(module: nn.Module, name: str) -> bool:
    return isinstance(module, nn.Linear)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


class _Stop(Exception):
    """Raised by the capture hook to end the forward at the first block."""


def capture_block_inputs(model: nn.Module, first_block: nn.Module, batches: Iterable[Batch]) -> Captured:
    """The (args, kwargs) the first block receives for each batch; the rest of the model does not run."""
    captured: Captured = []

    def hook(_mod, args, kwargs):
        captured.append((tuple(args), _without_cache(kwargs)))
        raise _Stop

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    device = _device_of(model)
    try:
        for batch in batches:
            try:
                call_model(model, _to(batch, device))
            except _Stop:
                continue
            raise RuntimeError(f"the forward did not reach the first block ({type(first_block).__name__}); "
                               "is it part of the model's forward?")
    finally:
        handle.remove()
    return captured


def _without_cache(kwargs: dict) -> dict:
    """Block keyword inputs with any key/value cache dropped: the stored inputs are replayed several times,
    and a cache would grow with every replay."""
    return {k: (None if type(v).__name__.endswith("Cache") else v) for k, v in kwargs.items()}


def hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden-state input of a block call (first positional, else ``hidden_states=``)."""
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise ValueError(f"block called without a positional input or hidden_states=; got {sorted(kwargs)}")


def with_hidden(args: tuple, kwargs: dict, h: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (h, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


def output_hidden(out: Any) -> torch.Tensor:
    """The hidden states a block returns (a tensor, or the first element of a tuple / ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "to_tuple"):
        return out.to_tuple()[0]
    raise TypeError(f"cannot read hidden states from a block output of type {type(out).__name__}")


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _hook_linears(root: nn.Module, prefix: str, filter_fn: LinearFilter, hessian: bool,
                  stats: dict[str, LinearStats]) -> list:
    handles = []
    for name, mod in root.named_modules():
        full = f"{prefix}.{name}" if prefix and name else (prefix or name)
        if not isinstance(mod, nn.Linear) or not filter_fn(mod, full):
            continue
        st = stats.setdefault(full, LinearStats(full, mod.in_features, hessian))
        handles.append(mod.register_forward_hook(lambda _m, inp, _o, st=st: st.add(inp[0])))
    return handles


@dataclass
class BlockRecord:
    """What ``on_block`` sees: the block's index, qualified name, module and the stats of its Linears."""

    index: int
    name: str
    block: nn.Module
    stats: dict[str, LinearStats]
    inputs: Captured


MODES = ("auto", "blocks", "full")


def blocks_chained(model: nn.Module, blocks: Sequence[nn.Module], batch: Batch) -> bool:
    """Whether each block's hidden output is exactly the next block's hidden input on ``batch`` (False when
    e.g. the residual add sits outside the block modules)."""
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}
    handles = []

    def pre(i: int):
        def hook(_m, a, k) -> None:
            ins.setdefault(i, hidden_of(a, k))
        return hook

    def post(i: int):
        def hook(_m, _a, o) -> None:
            outs.setdefault(i, output_hidden(o))
        return hook

    for i, b in enumerate(blocks):
        handles.append(b.register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(b.register_forward_hook(post(i)))
    try:
        with torch.no_grad():
            call_model(model, _to(batch, _device_of(model)))
    finally:
        for h in handles:
            h.remove()
    return all(i + 1 in ins and i in outs and ins[i + 1].shape == outs[i].shape and torch.equal(ins[i + 1], outs[i])
               for i in range(len(blocks) - 1))


def run_blocks(model: nn.Module, batches: Sequence[Batch], hessian: bool = False,
               filter_fn: LinearFilter | None = None,
               on_block: Callable[[BlockRecord], None] | None = None,
               on_output: Callable[[int, list[torch.Tensor], list[torch.Tensor]], None] | None = None,
               mode: str = "auto") -> dict[str, LinearStats]:
    """Calibrate ``model`` on ``batches`` block by block and return the stats of every selected Linear.

    Args:
        model: any nn.Module; its block list is found by find_blocks (or the whole model is one block).
        batches: calibration batches (tensors, tuples or dicts of model inputs).
        hessian: also accumulate X^T X per Linear (SparseGPT).
        filter_fn: ``fn(module, qualified name)`` choosing the Linears to collect (default: all).
        on_block: called after each block's stats are complete; may change the block in place (prune it).
            Later blocks are then calibrated on the changed block's outputs (sequential calibration).
        on_output: ``fn(index, inputs, outputs)`` with each block's hidden states in and out, per batch.
        mode: "blocks" stores the first block's inputs for all batches and feeds the blocks in turn (memory:
            one block's activations; needs chained blocks, checked on the first batch); "full" runs full
            forwards once per block instead (any model, memory: one batch); "auto" picks "blocks" where the
            blocks are chained, else "full".

    Returns:
        {qualified Linear name: LinearStats}.

    Example:
        >>> stats = run_blocks(model, batches, hessian=True)
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; valid: {', '.join(MODES)}")
    filter_fn = filter_fn or default_linear_filter
    found = find_blocks(model)
    stats: dict[str, LinearStats] = {}
    if found is None:
        blocks, prefix = [model], [""]
    else:
        blocks, prefix = list(found[1]), [f"{found[0]}.{i}" for i in range(len(found[1]))]
        _outside_stats(model, found[0], batches, hessian, filter_fn, stats)
        chained = blocks_chained(model, blocks, batches[0])
        if mode == "blocks" and not chained:
            raise ValueError(f"{found[0]}: a block's output is not the next block's input (a residual or other "
                             "op between blocks); use mode='full' or 'auto'")
        mode = "blocks" if chained and mode != "full" else "full"
    run = _run_chained if found is None or mode == "blocks" else _run_full
    with torch.no_grad():
        run(model, blocks, prefix, batches, hessian, filter_fn, on_block, on_output, stats, found is not None)
    return stats


def _run_chained(model, blocks, prefix, batches, hessian, filter_fn, on_block, on_output, stats, has_blocks):
    if has_blocks:
        captured = capture_block_inputs(model, blocks[0], batches)
    else:
        device = _device_of(model)
        captured = [as_call(_to(b, device)) for b in batches]
    for i, block in enumerate(blocks):
        block_stats: dict[str, LinearStats] = {}
        handles = _hook_linears(block, prefix[i], filter_fn, hessian, block_stats)
        try:
            outs = [block(*a, **k) for a, k in captured]
        finally:
            for h in handles:
                h.remove()
        stats.update(block_stats)
        if on_block is not None:
            on_block(BlockRecord(i, prefix[i], block, block_stats, captured))
            outs = [block(*a, **k) for a, k in captured]
        if not has_blocks:
            return
        hidden_out = [output_hidden(o) for o in outs]
        if on_output is not None:
            on_output(i, [hidden_of(a, k) for a, k in captured], hidden_out)
        captured = [with_hidden(a, k, h) for (a, k), h in zip(captured, hidden_out)]


def _forward_recording(model, block, batches, device, handles: list) -> tuple[list, list]:
    """Run every batch through the whole model with `handles` attached, recording `block`'s hidden input and
    output; every hook is removed afterwards, also on error."""
    ins: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    handles = [*handles,
               block.register_forward_pre_hook(lambda _m, a, k: ins.append(hidden_of(a, k)), with_kwargs=True),
               block.register_forward_hook(lambda _m, _a, o: outs.append(output_hidden(o)))]
    try:
        for b in batches:
            call_model(model, _to(b, device))
    finally:
        for h in handles:
            h.remove()
    return ins, outs


def _run_full(model, blocks, prefix, batches, hessian, filter_fn, on_block, on_output, stats, _has_blocks):
    device = _device_of(model)
    for i, block in enumerate(blocks):
        block_stats: dict[str, LinearStats] = {}
        ins, outs = _forward_recording(model, block, batches, device,
                                       _hook_linears(block, prefix[i], filter_fn, hessian, block_stats))
        stats.update(block_stats)
        if on_block is not None:
            on_block(BlockRecord(i, prefix[i], block, block_stats, []))
            if on_output is not None:  # outputs of the changed block
                ins, outs = _forward_recording(model, block, batches, device, [])
        if on_output is not None:
            on_output(i, ins, outs)


def _outside_stats(model: nn.Module, list_name: str, batches: Sequence[Batch], hessian: bool,
                   filter_fn: LinearFilter, stats: dict[str, LinearStats]) -> None:
    """Stats of selected Linears outside the block list, from one dense full forward (they are not part of
    the block-by-block pass)."""
    inside = list_name + "."
    outside = lambda m, n: filter_fn(m, n) and not n.startswith(inside)  # noqa: E731
    if not any(isinstance(m, nn.Linear) and outside(m, n) for n, m in model.named_modules()):
        return
    with torch.no_grad():
        stats.update(full_forward_stats(model, batches, hessian, outside))


def full_forward_stats(model: nn.Module, batches: Iterable[Batch], hessian: bool = False,
                       filter_fn: LinearFilter | None = None) -> dict[str, LinearStats]:
    """The same statistics from plain full forwards of the whole model (the reference the block-by-block
    pass must equal when nothing is pruned)."""
    stats: dict[str, LinearStats] = {}
    handles = _hook_linears(model, "", filter_fn or default_linear_filter, hessian, stats)
    device = _device_of(model)
    try:
        with torch.no_grad():
            for b in batches:
                call_model(model, _to(b, device))
    finally:
        for h in handles:
            h.remove()
    return stats


__all__ = ["MODES", "BlockRecord", "LinearStats", "as_call", "blocks_chained", "call_model", "capture_block_inputs", "find_blocks",
           "full_forward_stats", "hidden_of", "output_hidden", "run_blocks"]
