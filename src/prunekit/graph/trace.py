"""Trace one eager forward at the ATen level and build channel groups.

A ``TorchDispatchMode`` sees every ATen op after Python control flow ran and composite ops were decomposed,
so the rules in ``rules.py`` only need to know a small, precise op set. Parameters and buffers are the
same Python objects at this level, so every tensor maps back to the state_dict keys that made it.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.nn.attention import SDPBackend
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..utils.copies import meta_copy, to_meta
from ..utils.gcpause import without_gc
from ..utils.inputs import call_model
from ..utils.metaops import fast_call
from .groups import ChannelGroup, DependencyGraph, Member
from .ignore import resolve_ignore
from .labels import UnionFind, align
from .rnn import RECURRENT, rnn_rule
from .rules import HEAD_DIM_NOTE, SCORES_NOTE, _tensors, dim_labels, rule_for

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    NORM_TYPES = NORM_TYPES + (nn.RMSNorm,)


class UnsupportedOpError(RuntimeError):
    """An operation the tracer has no channel rule for touched a traced tensor."""


HEADS_ATTRS = ("num_heads", "n_heads", "num_attention_heads", "heads", "n_head", "nhead", "num_head")
HEAD_DIM_ATTRS = ("head_dim", "dim_head", "d_head", "head_size", "attention_head_size", "d_k", "d_v")
KV_HEADS_ATTRS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_head_kv")


def _head_sources(mod) -> list:
    """Where a module keeps its head counts: itself, then, for attention modules that keep only a `config`
    (Hugging Face Llama-style attention reads num_attention_heads / num_key_value_heads from it), that config."""
    cfg = getattr(mod, "config", None)
    named_attention = "Attention" in type(mod).__name__ or "Attn" in type(mod).__name__
    return [mod, cfg] if cfg is not None and named_attention else [mod]


def declared_heads(mod) -> int | None:
    """The head count above 1 that `mod` (or its config, for an attention module) declares (HEADS_ATTRS), or None."""
    for src in _head_sources(mod):
        for attr in HEADS_ATTRS:
            h = getattr(src, attr, None)
            if isinstance(h, int) and not isinstance(h, bool) and h > 1:
                return h
    return None


def declares_heads(model: nn.Module) -> bool:
    """Whether a module of `model` declares a head count above 1: the modules whose views `heads=True` cuts
    into whole heads. Without one, heads=True changes nothing, so callers that take it as an option refuse it."""
    return any(declared_heads(mod) is not None for mod in model.modules())


class TraceContext:
    def __init__(self, model: nn.Module, heads: bool = False) -> None:
        self.uf = UnionFind()
        self.model = model
        self.heads = heads  # prune whole attention heads instead of head_dim
        self.modules = dict(model.named_modules())
        self._state_ptrs: set[int] | None = None
        self.derived: dict[int, torch.Tensor] = {}  # tensors computed from parameters and constants only
        self.labels: dict[int, list[torch.Tensor]] = {}
        self.keep: list[torch.Tensor] = []
        self.stack: list[tuple[str, str]] = []
        self.splits: list[dict] = []
        self.atoms: dict[tuple[str, int], tuple[int, int]] = {}
        self._ranges: tuple | None = None  # key_of's lookup table, for len(atoms) entries
        self.ignored: set[str] = set()
        self.macs_by_key: dict[str, float] = {}  # MACs per weight element, summed over every use
        self.macs_other = 0.0  # MACs of contractions without a parameter operand (attention)
        self.on_meta = False  # the forward runs on a meta copy: values of meta tensors are unknown
        self.sees_meta = False  # a parameter, buffer or input is on meta (the copy's, or a model already there)

    def key_of(self, t: torch.Tensor) -> str | None:
        """The state_dict key whose atoms label t (t may be a view of a parameter); of several, the first
        labelled (a tied tensor's first name)."""
        ids = {int(s.reshape(-1)[0]) for s in self.get(t)}
        if not ids:
            return None
        starts, ends, first, keys = self._atom_ranges()
        best = None
        for i in ids:
            j = int(np.searchsorted(starts, i, side="right")) - 1  # the range starting at or before i
            if j >= 0 and i < ends[j] and (best is None or first[j] < best):
                best = first[j]
        return None if best is None else keys[best]

    def _atom_ranges(self) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
        """The distinct atom ranges sorted by start (they never overlap: each is a fresh allocation), with
        the position in `atoms` of the first key labelled by each; rebuilt when atoms were added."""
        if self._ranges is None or self._ranges[0] != len(self.atoms):
            first_of: dict[tuple[int, int], int] = {}
            for pos, rng in enumerate(self.atoms.values()):
                first_of.setdefault(rng, pos)
            order = sorted(first_of)
            self._ranges = (len(self.atoms), np.array([a for a, _ in order], dtype=np.int64),
                            np.array([a + n for a, n in order], dtype=np.int64), [first_of[r] for r in order],
                            [key for key, _d in self.atoms])
        return self._ranges[1:]

    def is_state(self, t: torch.Tensor) -> bool:
        """Whether t is (a view of) a parameter or buffer of the model, or computed from them alone (a weight
        normalised or standardised at forward time), rather than an activation."""
        if self._state_ptrs is None:
            self._state_ptrs = {_storage_id(v) for v in self.model.state_dict(keep_vars=True).values()
                                if isinstance(v, torch.Tensor)}
        return id(t) in self.derived or _storage_id(t) in self._state_ptrs

    def note_derived(self, args, out) -> None:
        """Outputs of an op whose every non-scalar tensor input is state are state-derived too."""
        ins = [t for t in _op_tensors(args) if t.numel() > 1]
        if ins and all(self.is_state(t) for t in ins):
            for o in _op_tensors(out):
                self.derived[id(o)] = o  # the reference keeps the id from being reused

    def add_macs(self, weight: torch.Tensor | None, macs: float) -> None:
        key = self.key_of(weight) if weight is not None else None
        if key is None:
            self.macs_other += macs
        else:
            self.macs_by_key[key] = self.macs_by_key.get(key, 0.0) + macs / max(1, weight.numel())

    # -- labels
    def get(self, t: Any) -> list[torch.Tensor]:
        if not isinstance(t, torch.Tensor):
            return []
        return self.labels.get(id(t), [])

    def set(self, t: torch.Tensor, srcs: list[torch.Tensor]) -> None:
        if not isinstance(t, torch.Tensor):
            return
        good = [s for s in srcs if s.dim() <= t.dim()]
        if not good:
            self.labels.pop(id(t), None)
            return
        self.labels[id(t)] = [align(s, t.dim()) for s in good]
        self.keep.append(t)

    def fresh_fixed(self, n: int, reason: str) -> torch.Tensor:
        start = self.uf.new(n)
        lab = torch.arange(start, start + n, dtype=torch.int64)
        self.uf.mark_fixed(lab, reason)
        return lab

    def label_tensor(self, t: torch.Tensor, key: str, fixed_reason: str | None = None, skip_dims=()) -> None:
        srcs = []
        for d, size in enumerate(t.shape):
            if size <= 1 or d in skip_dims:
                continue
            start = self.uf.new(size)
            lab = torch.arange(start, start + size, dtype=torch.int64)
            if fixed_reason:
                self.uf.mark_fixed(lab, fixed_reason)
            if not key.startswith("<"):
                self.atoms[(key, d)] = (start, size)
            shape = [1] * t.dim()
            shape[d] = size
            srcs.append(lab.reshape(shape))
        self.set(t, srcs)

    # -- where we are
    def where(self) -> str:
        if not self.stack:
            return "module '' (root)"
        name, typ = self.stack[-1]
        return f"module '{name}' ({typ})"

    def error(self, func, msg: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"aten op '{func}' in {self.where()}: {msg}. Exclude the module with "
                                  f"ignore=[...] or report the op so a rule can be added.")

    def record_split(self, inner: int, roots: torch.Tensor, factors: list[int], kind: str = "split",
                     module: str | None = None) -> None:
        """A view that splits a width into factors whose pruned one (`inner`) lives in module attributes:
        kind "split" (outer factors x inner head_dim-like size) or "heads" (factors [num_heads, head_dim])."""
        name = module if module is not None else (self.stack[-1][0] if self.stack else "")
        for s in self.splits:
            # views of the same shape in one module share its attributes (head_dim, num_heads): same layout, so
            # position i of each (head i of q, k and v) is one unit
            if s["kind"] == kind and s["module"] == name and s["factors"] == factors:
                self.uf.union_pairs(s["labels"], roots)
                return
        self.splits.append({"module": name, "inner": int(inner), "factors": factors, "labels": roots, "kind": kind})

    def head_module(self) -> tuple[str, int, int | None] | None:
        """(name, head count, head size or None) of the innermost module on the stack with a head-count attribute."""
        for name, _typ in reversed(self.stack):
            mod = self.modules.get(name)
            h = declared_heads(mod)
            if h is not None:
                d = next((getattr(mod, a) for a in HEAD_DIM_ATTRS if isinstance(getattr(mod, a, None), int)), None)
                return name, h, d
        return None

    def kv_heads(self, name: str) -> list[int]:
        """Key/value head counts (grouped-query attention) that module `name` or its config declares."""
        found = []
        for src in _head_sources(self.modules.get(name)):
            for attr in KV_HEADS_ATTRS:
                h = getattr(src, attr, None)
                if isinstance(h, int) and not isinstance(h, bool) and h > 1 and h not in found:
                    found.append(h)
        return found

    def record_width(self, size: int, labels: torch.Tensor) -> None:
        name = self.stack[-1][0] if self.stack else ""
        self.splits.append({"module": name, "inner": int(size), "factors": [int(size)], "labels": labels,
                            "kind": "width"})


def _op_tensors(obj) -> list[torch.Tensor]:
    """The tensors in an ATen op's arguments or outputs: tensors, (nested) tuples, lists and dicts of them.
    What ``_tensors`` (pytree) gives there, at a fraction of its cost per op; anything else goes to pytree."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)) and type(obj) in (tuple, list):
        return [t for item in obj for t in _op_tensors(item)]
    if type(obj) is dict:
        return [t for v in obj.values() for t in _op_tensors(v)]
    if obj is None or isinstance(obj, (int, float, bool, str, torch.dtype, torch.device, torch.layout,
                                       torch.memory_format)):
        return []
    return _tensors(obj)


def _storage_id(t: torch.Tensor) -> int:
    """What views of one tensor share: the data address, or on the meta device (where every address is 0)
    the storage object itself."""
    st = t.untyped_storage()
    return st._cdata if t.is_meta else st.data_ptr()


def _reads_meta_values(func, args, kwargs) -> bool:
    """Whether the op takes a meta integer or bool tensor of more than one element (indices, a mask, repeat
    counts): its labels would depend on values a meta run does not have. Embedding lookups only use the
    indices' shape."""
    if func in _SHAPE_ONLY_INDICES:
        return False
    return any(t.is_meta and not (t.is_floating_point() or t.is_complex()) and t.numel() > 1
               for t in _op_tensors((args, kwargs)))


_SHAPE_ONLY_INDICES = {torch.ops.aten.embedding.default}


_SDPA = torch._C._nn.scaled_dot_product_attention


def _attention_as_on_cpu(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                         enable_gqa=False):
    """scaled_dot_product_attention on meta tensors along the path a CPU run takes: torch picks the fused
    CPU kernel or the math decomposition by device, and on meta it always decomposes, which couples other
    dims than the real run. The choice is asked of torch with CPU tensors of the same sizes (never written)."""
    tensors = [t for t in (query, key, value, attn_mask) if t is not None]
    if not all(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
        return _SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                     scale=scale, enable_gqa=enable_gqa)

    def cpu_like(t):
        return None if t is None else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).requires_grad_(
            t.requires_grad and t.is_floating_point())
    choice = torch._fused_sdp_choice(cpu_like(query), cpu_like(key), cpu_like(value), cpu_like(attn_mask),
                                     dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    if choice == int(SDPBackend.MATH):
        return _SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                     scale=scale, enable_gqa=enable_gqa)
    if choice == int(SDPBackend.FLASH_ATTENTION) and not enable_gqa and (
            attn_mask is None or attn_mask.is_floating_point()):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
    raise _MetaValues(f"scaled_dot_product_attention (backend {choice}) is not followed on meta")


class _CpuAttention(TorchFunctionMode):
    """Direct calls of the attention kernel take the CPU path (see _attention_as_on_cpu)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is _SDPA:
            return _attention_as_on_cpu(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _no_fused_attention():
    """torch's fused inference path of nn.TransformerEncoder / nn.MultiheadAttention off for the trace: in eval
    mode with a padding mask it first calls a nested-tensor check op and then fused kernels that follow no
    channel rule; the module's plain path computes the same function with ordinary ops."""
    mha = torch.backends.mha
    saved = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(saved)


@contextlib.contextmanager
def _cpu_attention():
    """For the meta trace: attention takes the kernel a CPU run would, whether called directly (the torch
    function mode) or from inside torch.nn.functional (multi_head_attention_forward looks the name up in its
    module, which the mode does not see from inside another overridable function). The module attribute is
    replaced for the duration of the trace; the replacement passes CPU and CUDA calls through unchanged."""
    fn = torch.nn.functional
    saved = fn.scaled_dot_product_attention
    fn.scaled_dot_product_attention = _attention_as_on_cpu
    try:
        with _CpuAttention():
            yield
    finally:
        fn.scaled_dot_product_attention = saved


class _MetaValues(RuntimeError):
    """A labelled op on the meta copy needs tensor values: the trace is redone on the model itself."""


class _Mode(TorchDispatchMode):
    def __init__(self, ctx: TraceContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # on meta, the fast shape functions answer directly (FastMeta as a mode below this one would also
        # see every op the rules run on the label tensors)
        out = fast_call(func, args, kwargs) if self.ctx.on_meta else func(*args, **kwargs)
        if self.paused:
            return out
        ctx = self.ctx
        if not any(ctx.get(t) for t in _op_tensors((args, kwargs))):
            return out
        if ctx.sees_meta and _reads_meta_values(func, args, kwargs):
            if ctx.on_meta:
                raise _MetaValues(str(func))
            raise ctx.error(func, "it takes indices or a mask on the meta device, whose values a trace cannot "
                                  "read; trace the model on the CPU")
        rule = rule_for(func)
        if rule is None and ctx.ignored and any(n in ctx.ignored for n, _ in ctx.stack):
            _opaque(ctx, args, kwargs, out)  # no rule, but the user excluded this module: pin through it
            return out
        if rule is None:
            raise ctx.error(func, "no channel-coupling rule for this operation")
        rule(ctx, func, args, kwargs, out)
        ctx.note_derived((args, kwargs), out)
        return out


def _opaque(ctx: TraceContext, args, kwargs, out) -> None:
    """Inside an excluded module: pin whatever goes in, and let nothing be coupled through it."""
    for t in _tensors((args, kwargs)):
        for src in ctx.get(t):
            ctx.uf.mark_fixed(src, f"used inside an excluded module ({ctx.where()})")
    for o in _tensors(out):
        srcs = []
        for d, size in enumerate(o.shape):
            if size > 1 and d > 0:
                shape = [1] * o.dim()
                shape[d] = size
                srcs.append(ctx.fresh_fixed(size, f"output of an excluded module ({ctx.where()})").reshape(shape))
        ctx.set(o, srcs)


def _mha_rule(ctx: TraceContext, mod: nn.MultiheadAttention, name: str, query: torch.Tensor) -> None:
    """nn.MultiheadAttention derives q/k/v widths from the query width: tie them together."""
    e = mod.embed_dim
    qlab = dim_labels(ctx, query, -1, e)
    keys = [("in_proj_weight", 3), ("in_proj_bias", 3), ("q_proj_weight", 1), ("k_proj_weight", 1),
            ("v_proj_weight", 1)]
    for attr, parts in keys:
        start_size = ctx.atoms.get((f"{name}.{attr}" if name else attr, 0))
        if start_size is None:
            continue
        start, size = start_size
        lab = torch.arange(start, start + size, dtype=torch.int64).reshape(parts, e)
        ctx.uf.union_pairs(lab, qlab.expand(parts, e))
    ctx.uf.note(qlab, HEAD_DIM_NOTE)
    for attr in ("bias_k", "bias_v"):
        t = getattr(mod, attr, None)
        if t is not None:
            ctx.uf.union_pairs(dim_labels(ctx, t, -1, e), qlab)


@contextlib.contextmanager
def _module_hooks(ctx: TraceContext, mode: _Mode, model: nn.Module):
    names = {id(m): n for n, m in model.named_modules()}
    handles = []

    def pre(mod, args, kwargs):
        ctx.stack.append((names.get(id(mod), "?"), type(mod).__name__))
        if isinstance(mod, RECURRENT):  # one op with its own rule (rnn.py): the ATen ops inside are not traced
            mode.paused = True
        if isinstance(mod, nn.MultiheadAttention):
            q = args[0] if args else kwargs.get("query")
            mode.paused = True
            try:
                _mha_rule(ctx, mod, names.get(id(mod), ""), q)
            finally:
                mode.paused = False

    def post(mod, args, kwargs, output):
        if isinstance(mod, RECURRENT):
            try:
                rnn_rule(ctx, mod, args, kwargs, output)
            finally:
                mode.paused = False
        if ctx.stack:
            ctx.stack.pop()

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _state_entries(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            out[k] = v
    return out


def _matches(ignore, key: str, module_name: str, module: nn.Module) -> bool:
    for item in ignore:
        if isinstance(item, nn.Module) and item is module:
            return True
        if isinstance(item, type) and isinstance(module, item):
            return True
        if isinstance(item, str) and (key == item or module_name == item or key.startswith(item + ".")):
            return True
        if callable(item) and not isinstance(item, (nn.Module, type)) and item(module, module_name):
            return True
    return False


@without_gc
def trace(model: nn.Module, example_inputs: Any, ignore: Iterable | None = None, round_to: int = 1,
          prune_outputs: bool = False, filter_fn: Callable[[nn.Module, str], bool] | None = None,
          heads: bool = False, after: Callable[[nn.Module, DependencyGraph, Any], object] | None = None,
          ) -> DependencyGraph:
    """Trace one forward of `model` on `example_inputs` and return its channel groups.

    The forward runs on a meta copy of the model where that gives the same labels as the model itself
    (see _labelled_forward_on_meta), else on the model; `graph.traced_on` says which.

    ignore: module names, state_dict keys, module types, module objects or predicates whose tensors must not
    change. filter_fn(module, name) -> False has the same effect (torchao style). round_to: keep every pruned
    tensor width a multiple of this number (see `round_unit`).
    after(model, graph, example_inputs), when given, runs on the finished graph (`pk.trace` passes the probe
    of prunekit.probing, which applies plans: graph itself never imports surgery).
    heads: in attention modules with a head-count attribute (num_heads, n_heads, ...), make whole heads the
    pruning unit (num_heads shrinks, head_dim stays) instead of head_dim (the default).
    """
    ignore = resolve_ignore(model, ignore)  # one entry per name; entries matching nothing raise
    if filter_fn is not None:
        ignore.append(lambda m, n: not filter_fn(m, n))
    # what the user excluded is decided on the model itself (ignore may name its module objects)
    mods = dict(model.named_modules())
    ignored = {n for n, m in mods.items() if n and _matches(ignore, n, n, m)}
    entries = _state_entries(model)
    reasons = {}
    for key in entries:
        mname = key.rsplit(".", 1)[0] if "." in key else ""
        if _matches(ignore, key, mname, mods.get(mname, model)):
            reasons[key] = f"excluded by the user ({mname or key})"
    ctx, out = _labelled_forward_on_meta(model, example_inputs, ignored, reasons, heads)
    if ctx is None:
        ctx, out = _labelled_forward(model, example_inputs, ignored, reasons, heads)
    if not prune_outputs:
        for t in _tensors(out):
            for s in ctx.get(t):
                ctx.uf.mark_fixed(s, "feeds the model output")
    shapes = {k: tuple(v.shape) for k, v in entries.items()}
    groups = build_groups(ctx, model, round_to)
    splits = [{"module": s["module"], "inner": s["inner"], "factors": s["factors"], "kind": s["kind"],
               "roots": ctx.uf.roots(s["labels"].numpy()).tolist()} for s in ctx.splits]
    graph = DependencyGraph(model=model, groups=groups, splits=splits, shapes=shapes,
                            example_inputs=example_inputs, macs_by_key=dict(ctx.macs_by_key),
                            macs_other=ctx.macs_other,
                            param_keys=[k for k, _ in model.named_parameters() if k in shapes],
                            root_of={r: (g.name, c) for g in groups for c, r in enumerate(g.roots)},
                            output_shapes=[t.shape for t in _tensors(out)],
                            traced_on="meta" if ctx.on_meta else "model")
    if after is not None:
        after(model, graph, example_inputs)
    return graph


def _labelled_forward(model: nn.Module, inputs: Any, ignored: set[str], reasons: dict[str, str],
                      heads: bool, on_meta: bool = False) -> tuple[TraceContext, Any]:
    """Label every floating-point parameter and buffer of `model` and the inputs, run one forward under
    the labelling mode and return the context and the output."""
    ctx = TraceContext(model, heads=heads)
    ctx.on_meta = on_meta
    ctx.ignored = ignored
    first_key: dict[int, str] = {}
    entries = _state_entries(model)
    ctx.sees_meta = on_meta or any(t.is_meta for t in list(entries.values()) + _tensors(inputs))
    for key, t in entries.items():
        if id(t) in first_key:  # tied tensor: same atoms under both names
            for (k0, d), v in list(ctx.atoms.items()):
                if k0 == first_key[id(t)]:
                    ctx.atoms[(key, d)] = v
            continue
        first_key[id(t)] = key
        ctx.label_tensor(t, key, fixed_reason=reasons.get(key))
    for t in _tensors(inputs):
        ctx.label_tensor(t, "<input>", fixed_reason="model input", skip_dims=(0,) if t.dim() > 1 else ())
    was_training = model.training
    model.eval()
    mode = _Mode(ctx)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(_no_fused_attention())
            stack.enter_context(_module_hooks(ctx, mode, model))
            if on_meta:
                stack.enter_context(_cpu_attention())
            stack.enter_context(mode)
            out = call_model(model, inputs)
    finally:
        model.train(was_training)
    return ctx, out


# Models with fewer parameter and buffer elements than this are traced on the model itself: their real
# forward costs less than running meta kernels (ResNet-20 at 32 px: 0.05 s real, 0.10 s on meta), while
# ResNet-50 or ViT-B/16 at 224 px spend most of a real trace in arithmetic the labels do not need.
META_TRACE_MIN_ELEMENTS = 5_000_000


def _labelled_forward_on_meta(model: nn.Module, inputs: Any, ignored: set[str], reasons: dict[str, str],
                              heads: bool) -> tuple[TraceContext | None, Any]:
    """The labelled forward on a meta copy of `model` (shapes only: no arithmetic, no memory for weights),
    or (None, None) for small models (META_TRACE_MIN_ELEMENTS), models or inputs off the CPU, and where that
    cannot give the real run's labels: lazy modules (the real forward would initialise them), a copy or meta
    forward that fails (data-dependent steps), or an op whose labels would follow the values of a meta tensor
    (indices, masks). Integer buffers stay real, so index tables are
    followed value by value as in the real run."""
    tensors = list(model.parameters()) + list(model.buffers())
    if any(is_lazy(t) for t in tensors) or sum(t.numel() for t in tensors) < META_TRACE_MIN_ELEMENTS:
        return None, None
    if any(t.device.type != "cpu" for t in tensors + _tensors(inputs)):
        return None, None  # attention kernels are chosen per device: the meta run follows the CPU's choice
    try:
        twin = meta_copy(model, keep_integer=True)
        return _labelled_forward(twin, to_meta(inputs), ignored, reasons, heads, on_meta=True)
    except Exception:  # noqa: BLE001 - any failure on meta: the real forward decides (and reports its errors)
        return None, None


def _role(key: str, dim: int, produced: bool, module: nn.Module | None) -> str:
    if isinstance(module, NORM_TYPES):
        return "norm"
    if produced:
        return "out"
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and key.endswith("weight"):
        transposed = getattr(module, "transposed", False)
        return "in" if dim == (0 if transposed else 1) else "other"
    return "other"


def width_multiples(ctx: TraceContext) -> dict[int, int]:
    """root -> the multiple a kernel needs its width to stay (rules record `ctx.width_multiples`: grouped_mm
    wants 16-byte aligned rows)."""
    out: dict[int, int] = {}
    for labels, m in getattr(ctx, "width_multiples", []):
        for r in ctx.uf.roots(labels.reshape(-1).numpy()).tolist():
            out[r] = max(out.get(r, 1), m)
    return out


def _components(n: int, dims: list[np.ndarray]) -> np.ndarray:
    """Connected components of 0..n-1 where all ids of each array in `dims` are joined: each id's label is
    the smallest id of its component (min-label propagation with pointer jumping, vectorised)."""
    comp = np.arange(n, dtype=np.int64)
    a = np.concatenate([np.full(len(d), d[0], dtype=np.int64) for d in dims if len(d)])
    b = np.concatenate([d for d in dims if len(d)]).astype(np.int64)
    while True:
        lo = np.minimum(comp[a], comp[b])
        before = comp.copy()
        np.minimum.at(comp, a, lo)
        np.minimum.at(comp, b, lo)
        while True:  # point every id at its label's label until nothing moves
            nxt = comp[comp]
            if np.array_equal(nxt, comp):
                break
            comp = nxt
        if np.array_equal(comp, before):
            return comp


def _produced_groups(ctx: TraceContext) -> tuple[dict[tuple[str, int], np.ndarray], set, dict[int, list[int]]]:
    """Roots of every labelled (key, dim), the produced dims, and each group's channels in producer order.

    Group-level union: all channels of one produced dim belong to one group.
    """
    uf = ctx.uf
    roots_of: dict[tuple[str, int], np.ndarray] = {}
    produced_dims = []
    for (key, d), (start, size) in ctx.atoms.items():
        roots_of[(key, d)] = uf.roots(np.arange(start, start + size))
        if uf.produced[start:start + size].any():
            produced_dims.append((key, d))
    group_channels: dict[int, list[int]] = {}
    if produced_dims:
        seq = np.concatenate([roots_of[kd] for kd in produced_dims])  # every produced root, in dim order
        uniq, first = np.unique(seq, return_index=True)
        chans = uniq[np.argsort(first, kind="stable")]  # distinct roots, in order of first appearance
        comp = _components(len(uniq), [np.searchsorted(uniq, roots_of[kd]) for kd in produced_dims])
        comp_of = comp[np.searchsorted(uniq, chans)]
        _, at = np.unique(comp_of, return_index=True)  # groups in order of their first channel
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[comp_of[np.sort(at)]] = np.arange(len(at))
        order = np.argsort(rank[comp_of], kind="stable")  # channels by group, in appearance order within it
        bounds = np.concatenate([[0], np.cumsum(np.bincount(rank[comp_of], minlength=len(at)))]).tolist()
        flat = chans[order].tolist()
        for gi in range(len(at)):
            group_channels[gi] = flat[bounds[gi]:bounds[gi + 1]]
    return roots_of, set(produced_dims), group_channels


def _fixed_and_notes(ctx: TraceContext) -> tuple[dict[int, str], dict[int, set[str]]]:
    """Root -> why it is fixed, and root -> the notes that make zeroing it inexact."""
    uf = ctx.uf
    fixed = np.nonzero(uf.fixed[: uf.n])[0]
    roots, first = np.unique(uf.roots(fixed), return_index=True)  # per root, its lowest fixed atom gives the reason
    fixed_roots: dict[int, str] = {r: uf.fixed_reason.get(a, "fixed")
                                   for r, a in zip(roots.tolist(), fixed[first].tolist())}
    notes: dict[int, set[str]] = {}
    whole_heads = {int(r) for s in ctx.splits if s["kind"] == "heads" for r in uf.roots(s["labels"].numpy())}
    for text, roots in uf.noted_roots().items():
        # a head removed whole keeps its head_dim, so the scale notes do not apply to it
        skip = whole_heads if text in (HEAD_DIM_NOTE, SCORES_NOTE) else ()
        for r in roots.tolist():
            if r not in skip:
                notes.setdefault(r, set()).add(text)
    return fixed_roots, notes


def _member_indices(n_atoms: int, roots_of: dict[tuple[str, int], np.ndarray], channels: list[list[int]]
                    ) -> list[dict[tuple[str, int], list[list[int]]]]:
    """Per group, per (key, dim): the positions of each of its channels along that dim."""
    gi_of = np.full(n_atoms, -1, dtype=np.int64)  # root -> group, channel
    c_of = np.full(n_atoms, -1, dtype=np.int64)
    for gi, chans in enumerate(channels):
        for c, r in enumerate(chans):
            gi_of[r], c_of[r] = gi, c
    member_idx: list[dict[tuple[str, int], list[list[int]]]] = [dict() for _ in channels]
    for kd, roots in roots_of.items():
        gis, cs = gi_of[roots], c_of[roots]
        for gi in np.unique(gis[gis >= 0]).tolist():
            pos = np.nonzero(gis == gi)[0]
            order = np.argsort(cs[pos], kind="stable")  # positions of channel 0, then 1, ...
            size = len(channels[gi])
            counts = np.bincount(cs[pos], minlength=size)
            flat = pos[order].tolist()
            if len(flat) == size and counts.min() == 1:  # one position per channel: the common case
                member_idx[gi][kd] = [[p] for p in flat]
                continue
            bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
            member_idx[gi][kd] = [flat[bounds[c]:bounds[c + 1]] for c in range(size)]
    return member_idx


def _group(ctx: TraceContext, chans: list[int], member_idx: dict[tuple[str, int], list[list[int]]],
           produced_set: set, fixed_roots: dict[int, str], notes: dict[int, set[str]], multiple: int
           ) -> ChannelGroup:
    """One ChannelGroup: its members with their roles, its name (first producer, "+n" more), its verdict."""
    members = []
    producer_modules = []
    for (key, d), idx in member_idx.items():
        mname = key.rsplit(".", 1)[0] if "." in key else ""
        produced = (key, d) in produced_set
        if key.endswith("bias") and d == 0:  # a producer's bias follows its output channels
            produced = produced or any((key[:-4] + "weight", wd) in produced_set for wd in (0, 1))
        members.append(Member(key=key, dim=d, index=idx, module=mname,
                              role=_role(key, d, produced, ctx.modules.get(mname))))
        if produced and not (key.endswith("bias") and d == 0) and mname not in producer_modules:
            producer_modules.append(mname)
    cand = [c for c, r in enumerate(chans) if r not in fixed_roots]
    reasons = sorted({fixed_roots[r] for r in chans if r in fixed_roots})
    name = producer_modules[0] if producer_modules else members[0].key
    if len(producer_modules) > 1:
        name += f" (+{len(producer_modules) - 1})"
    prunable = len(chans) > 1 and len(cand) >= 1
    reason = "single channel" if len(chans) <= 1 else ("; ".join(reasons) if not prunable or reasons else "")
    return ChannelGroup(name=name, size=len(chans), members=members, prunable=prunable, reason=reason,
                        candidates=cand, notes=sorted({n for r in chans for n in notes.get(r, ())}),
                        round_to=multiple, roots=chans)


def round_unit(round_to: int, member_idx: dict[tuple[str, int], list[list[int]]]) -> int:
    """How many of a group's channels to keep at a time so that every member tensor's pruned width stays a
    multiple of `round_to`. A channel spanning k positions of a tensor (an embedding dimension repeated in
    every attention head, a channel of a flattened feature map, a whole head) needs round_to / gcd(round_to, k)
    of them; a member whose channels span unequal counts needs round_to."""
    if round_to <= 1:
        return 1
    if not member_idx:
        return round_to
    unit = 1
    for per_channel in member_idx.values():
        spans = {len(positions) for positions in per_channel}
        k = spans.pop() if len(spans) == 1 else 1
        unit = math.lcm(unit, round_to // math.gcd(round_to, max(1, k)))
    return unit


def build_groups(ctx: TraceContext, model: nn.Module, round_to: int = 1) -> list[ChannelGroup]:
    """The channel groups of a finished trace, with unique, stable names (a repeated name gets "#n")."""
    roots_of, produced_set, group_channels = _produced_groups(ctx)
    fixed_roots, notes = _fixed_and_notes(ctx)
    multiples = width_multiples(ctx)
    channels = list(group_channels.values())
    member_idx = _member_indices(ctx.uf.n, roots_of, channels)
    groups = [_group(ctx, chans, member_idx[gi], produced_set, fixed_roots, notes,
                     math.lcm(round_unit(round_to, member_idx[gi]), *{multiples[r] for r in chans if r in multiples}))
              for gi, chans in enumerate(channels)]
    counts: dict[str, int] = {}
    for g in groups:
        n = counts.get(g.name, 0)
        counts[g.name] = n + 1
        if n:
            g.name = f"{g.name}#{n}"
    return groups
