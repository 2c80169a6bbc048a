"""One channel-coupling rule per ATen operation kind.

A rule gets the tracer context, the op, its (real) args/kwargs and output, reads the label tensors of the
inputs (``ctx.get``), unions atoms that must go together (``ctx.uf``) and attaches labels to the outputs
(``ctx.set``). The table at the bottom maps op names to rules; an op with labelled inputs and no rule is an
error that names the op and the module.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..utils.inputs import output_tensors
from .labels import align, along, compress, varying_dims

Rule = Callable[[Any, Any, tuple, dict, Any], None]

# exact under zeroing: sum of zeros is zero; mixing: the result changes when channels are removed
_EXACT_REDUCE = {"sum", "linalg_vector_norm", "norm", "nansum"}


_tensors = output_tensors  # every tensor inside args / kwargs / outputs


def _outs(out) -> list[torch.Tensor]:
    return _tensors(out)


def along_dims(ctx, src: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Labels of src over `dims` (kept in order); other dims are unioned away."""
    nd = src.dim()
    dims = [d % nd for d in dims]
    rest = [d for d in range(nd) if d not in dims]
    moved = src.permute(*rest, *dims)
    tail = moved.shape[len(rest):]
    flat = moved.reshape(-1, max(1, int(torch.tensor(tail).prod())) if tail else 1)
    if flat.shape[0] > 1:
        ctx.uf.union_pairs(flat, flat[:1].expand_as(flat))
    return flat[0].reshape(tail)


def dim_labels(ctx, t: torch.Tensor, dim: int, size: int | None = None) -> torch.Tensor:
    """1-D labels of tensor t along dim (all sources unioned); fresh fixed atoms when t has none."""
    size = t.shape[dim] if size is None else size
    found = None
    srcs = [align(s, t.dim()) for s in ctx.get(t)]
    varying = [s for s in srcs if s.shape[dim] > 1]
    if not varying:
        varying = [s for s in srcs if s.numel() == 1][:1]
    for s in varying:
        lab = along(ctx.uf, s, dim)
        if lab.numel() == 1 and size > 1:
            lab = lab.expand(size)
        if found is None:
            found = lab
        else:
            ctx.uf.union_pairs(found, lab)
    if found is None:
        return ctx.fresh_fixed(size, "not derived from a parameter")
    return found


def placed(lab: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim % ndim] = lab.numel()
    return lab.reshape(shape)


# ---------------------------------------------------------------- element-wise
def merge_sources(ctx, per_arg: list[list[torch.Tensor]], ndim: int) -> list[torch.Tensor]:
    """Union the label sources of several operands position by position.

    Sources of one operand are independent axes and are never joined with each other; a source of a later
    operand joins the earlier source with the same varying dims, else the one it overlaps most.
    """
    merged: list[torch.Tensor] = []
    consts: list[torch.Tensor] = []
    for srcs in per_arg:
        mine: list[torch.Tensor] = []
        for s in srcs:
            s = align(s, ndim)
            vs = set(varying_dims(s))
            if not vs:
                consts.append(s)
                continue
            best, best_score = None, 0
            for i, m in enumerate(merged):
                vm = set(varying_dims(m))
                score = 100 if vm == vs else len(vm & vs)
                if score > best_score:
                    best, best_score = i, score
            if best is None:
                mine.append(s)
                continue
            a, b = torch.broadcast_tensors(merged[best], s)
            ctx.uf.union_pairs(a, b)
            merged[best] = compress(a.contiguous())
        merged.extend(mine)
    return merged or consts[:1]


def pointwise(ctx, func, args, kwargs, out) -> None:
    outs = _outs(out)
    if not outs:
        return
    ndim = outs[0].dim()
    per_arg = [[s for s in ctx.get(t) if s.dim() <= ndim] for t in _tensors((args, kwargs))]
    merged = merge_sources(ctx, per_arg, ndim)
    for o in outs:
        ctx.set(o, merged)


def identity(ctx, func, args, kwargs, out) -> None:
    srcs = ctx.get(args[0])
    for o in _outs(out):
        if o.dim() == args[0].dim():
            ctx.set(o, srcs)


def copy_(ctx, func, args, kwargs, out) -> None:
    dst, src = args[0], args[1]
    per_arg = [list(ctx.get(dst)), [s for s in ctx.get(src) if s.dim() <= dst.dim()]]
    merged = merge_sources(ctx, per_arg, dst.dim())
    ctx.set(dst, merged)
    base = getattr(dst, "_base", None)
    if isinstance(base, torch.Tensor) and base is not dst and ctx.get(src):
        _write_through(ctx, dst, base, merged)


def _write_through(ctx, dst: torch.Tensor, base: torch.Tensor, srcs: list[torch.Tensor]) -> None:
    """A copy into a view (a buffer filled slice by slice, as pad_packed_sequence does) labels the buffer too,
    along the dims the view spans whole (same size and stride): the labels of the other dims stay unknown."""
    whole = {}
    for d in range(dst.dim()):
        for e in range(base.dim()):
            if dst.shape[d] > 1 and dst.shape[d] == base.shape[e] and dst.stride(d) == base.stride(e):
                whole[d] = e
    new = []
    for s in srcs:
        s = align(s, dst.dim())
        vary = varying_dims(s)
        if not vary or any(d not in whole for d in vary):
            continue
        moved = s.reshape([s.shape[d] for d in vary])
        order = sorted(vary, key=lambda d: whole[d])
        moved = moved.permute(*[vary.index(d) for d in order])
        shape = [1] * base.dim()
        for d in order:
            shape[whole[d]] = s.shape[d]
        new.append(moved.reshape(shape))
    if new:
        ctx.set(base, merge_sources(ctx, [list(ctx.get(base)), new], base.dim()))


# ---------------------------------------------------------------- data movement
def _expanded(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return align(s, t.dim()).expand(t.shape).contiguous()


def _lost(ctx, before: torch.Tensor, after_list: list[torch.Tensor], opname: str) -> None:
    """A constant selection on a labelled dim: the code would keep selecting the same positions."""
    had = set(ctx.uf.roots(torch.unique(before).numpy()).tolist())
    kept = set()
    for a in after_list:
        kept.update(ctx.uf.roots(torch.unique(a).numpy()).tolist())
    if had - kept:
        ctx.uf.mark_fixed(before, f"selected by constant positions in {opname} ({ctx.where()})")


def _split_union(ctx, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """A view that splits one labelled dim into several: keep the outer factors fixed, prune the inner."""
    after = compress(after)
    vb, va = varying_dims(compress(before)), varying_dims(after)
    if len(va) > len(vb) and len(va) >= 2:
        if ctx.heads and _head_union(ctx, after, va):
            return after
        inner = va[-1]
        moved = after.movedim(inner, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        ctx.uf.union_pairs(flat, flat[:1].expand_as(flat))
        ctx.record_split(after.shape[inner], flat[0].clone(), [after.shape[d] for d in va])
    return after


def _head_union(ctx, after: torch.Tensor, va: list[int]) -> bool:
    """Whole-head mode: when the view splits off the head count of the module running it (an outer factor
    equal to, or with the batch folded in a multiple of, `num_heads`), every position of one head is one unit."""
    found = ctx.head_module()
    if found is None:
        return False
    module, h, head_size = found
    d = after.shape[va[-1]]
    if head_size is not None and head_size != d:
        return False  # e.g. nn.MultiheadAttention's (3, embed_dim) split of the packed projection
    counts = [h] + [c for c in ctx.kv_heads(module) if c != h]  # q heads, then grouped kv heads
    for j in reversed(va[:-1]):
        f = after.shape[j]
        h = next((c for c in counts if c == f), None) or (counts[0] if f % counts[0] == 0 and head_size else None)
        if h is not None:
            rows = after.movedim(j, 0).reshape(f, -1)
            per_head = rows.reshape(f // h, h, -1).transpose(0, 1).reshape(h, -1)  # row r is head r % h
            ctx.uf.union_pairs(per_head, per_head[:, :1].expand_as(per_head))
            ctx.record_split(h, per_head[:, 0].clone(), [h, d], kind="heads", module=module)
            return True
    return False


_PERMUTING = {"t", "transpose", "permute", "movedim", "alias", "t_copy", "transpose_copy", "permute_copy"}
_RESHAPING = {"view", "_unsafe_view", "reshape", "view_copy"}


def _view_groups(ins: list[int], outs: list[int]) -> list[tuple[list[int], list[int]]]:
    """Pair runs of input dims with runs of output dims that have the same element count."""
    groups, i, j = [], 0, 0
    while i < len(ins) or j < len(outs):
        gi, gj = [], []
        pi = pj = 1
        if i < len(ins):
            gi.append(i); pi *= ins[i]; i += 1
        if j < len(outs):
            gj.append(j); pj *= outs[j]; j += 1
        while pi != pj or (i < len(ins) and ins[i] == 1 and pi == pj and j >= len(outs)):
            if pi < pj and i < len(ins) or j >= len(outs):
                if i >= len(ins):
                    break
                gi.append(i); pi *= ins[i]; i += 1
            else:
                gj.append(j); pj *= outs[j]; j += 1
        groups.append((gi, gj))
    return groups


def _fast_view(ctx, s: torch.Tensor, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Reshape a compressed label tensor, expanding only the dim runs that carry labels."""
    s = align(s, x.dim())
    ins, outs = list(x.shape), list(o.shape)
    in_exp, out_exp = [1] * len(ins), [1] * len(outs)
    for gi, gj in _view_groups(ins, outs):
        if any(s.shape[d] > 1 for d in gi):
            for d in gi:
                in_exp[d] = ins[d]
            for d in gj:
                out_exp[d] = outs[d]
    full = s.expand(in_exp).contiguous()
    res = _split_union(ctx, full, full.reshape(out_exp))
    for d in varying_dims(res):
        if len(varying_dims(res)) == 1:  # a width written into the view's shape (e.g. self.hidden_dim)
            ctx.record_width(outs[d], along(ctx.uf, res, d))
    return res


_SPLITTING = {"split", "split_with_sizes", "unbind", "chunk", "tensor_split"}
_SELECTING = {"select", "slice", "narrow", "index_select", "split", "split_with_sizes", "unbind", "chunk",
              "tensor_split", "select_copy", "slice_copy"}


def _dim_arg(func, args, kwargs) -> int:
    name = func.__name__.split(".")[0]
    if "dim" in kwargs:
        return kwargs["dim"]
    if name in ("unbind",):
        return args[1] if len(args) > 1 else 0
    if name in ("split", "split_with_sizes", "chunk", "tensor_split"):
        return args[2] if len(args) > 2 else 0
    return args[1] if len(args) > 1 else 0


def _squeeze_dims(x: torch.Tensor, args) -> list[int]:
    if len(args) < 2:
        return [d for d in range(x.dim()) if x.shape[d] == 1]
    dims = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
    return [d % max(1, x.dim()) for d in dims if x.shape[d] == 1]


def movement(ctx, func, args, kwargs, out) -> None:
    """View-like and selection ops: run the same op on the (expanded) int64 label tensor."""
    x = args[0]
    outs = _outs(out)
    name = func.__name__.split(".")[0]
    if name in _PERMUTING or name in ("unsqueeze", "squeeze", "expand", "expand_copy"):
        res = []
        for s in ctx.get(x):
            s = align(s, x.dim())
            if name in ("expand", "expand_copy"):
                r = align(s, outs[0].dim())
            elif name == "squeeze":
                keep = [d for d in range(x.dim()) if d not in _squeeze_dims(x, args)]
                r = s.permute(*keep, *[d for d in range(x.dim()) if d not in keep]).reshape([s.shape[d] for d in keep])
            else:
                r = func(s, *args[1:], **kwargs)
            res.append(r)
        ctx.set(outs[0], res)
        return
    if name in _SELECTING:
        d = _dim_arg(func, args, kwargs) % max(1, x.dim())
        per_out = [[] for _ in outs]
        for s in ctx.get(x):
            s = align(s, x.dim())
            if s.shape[d] == 1:
                for i, o in enumerate(outs):
                    per_out[i].append(s.squeeze(d) if o.dim() < x.dim() else s)
                continue
            res = _tensors(func(s, *args[1:], **kwargs))
            if name in _SPLITTING:
                _equal_split(ctx, res, func, s)
            else:
                _lost(ctx, s, res, name)
            for i, r in enumerate(res):
                per_out[i].append(compress(r))
        for o, srcs in zip(outs, per_out):
            ctx.set(o, srcs)
        return
    if name in _RESHAPING and len(outs) == 1:
        ctx.set(outs[0], [_fast_view(ctx, s, x, outs[0]) for s in ctx.get(x)])
        return
    per_out: list[list[torch.Tensor]] = [[] for _ in outs]
    for s in ctx.get(x):
        full = _expanded(s, x)
        res = _tensors(func(full, *args[1:], **kwargs))
        if len(res) != len(outs):
            raise ctx.error(func, "label propagation returned a different number of outputs")
        if name in _RESHAPING or name == "unflatten":  # splits are handled by the selecting path above
            res = [_split_union(ctx, full, r) for r in res]
        else:
            _lost(ctx, full, res, name)
        for i, r in enumerate(res):
            per_out[i].append(compress(r))
    for o, srcs in zip(outs, per_out):
        ctx.set(o, srcs)


def _equal_split(ctx, pieces: list[torch.Tensor], func, full) -> None:
    shapes = {tuple(p.shape) for p in pieces}
    if len(shapes) == 1:
        base = pieces[0]
        for p in pieces[1:]:
            ctx.uf.union_pairs(base, p)  # count coupling: every piece keeps the same positions
    else:
        _lost(ctx, full, [], func.__name__)


def cat(ctx, func, args, kwargs, out) -> None:
    tensors = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    tensors = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)]
    nd = out.dim()
    d = dim % nd
    if all(align(s, nd).shape[d] == 1 for t in tensors for s in ctx.get(t)):
        # joined along a dim that carries no labels (tokens, batch): the pieces share channels
        per_arg = [list(ctx.get(t)) for t in tensors]
        ctx.set(out, merge_sources(ctx, per_arg, nd))
        return
    slots = max(len(ctx.get(t)) for t in tensors)
    res = []
    for k in range(slots):
        pieces = []
        for t in tensors:
            srcs = ctx.get(t)
            if k < len(srcs):
                pieces.append(_expanded(srcs[k], t))
            elif srcs:
                pieces.append(_expanded(srcs[0], t))
            else:
                shape = [1] * nd
                shape[dim % nd] = t.shape[dim]
                lab = ctx.fresh_fixed(t.shape[dim], "concatenated with a tensor not derived from parameters")
                pieces.append(lab.reshape(shape).expand(t.shape).contiguous())
        res.append(compress(torch.cat(pieces, dim)))
    ctx.set(out, res)


def stack(ctx, func, args, kwargs, out) -> None:
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    dim = dim % out.dim()
    tensors = list(args[0])
    slots = max(len(ctx.get(t)) for t in tensors)
    res = []
    for k in range(slots):
        pieces = []
        for t in tensors:
            srcs = ctx.get(t) or [ctx.fresh_fixed(1, "stacked with a tensor not derived from parameters")]
            pieces.append(_expanded(srcs[min(k, len(srcs) - 1)], t))
        for p in pieces[1:]:  # stacked tensors have one shape: a channel goes from every piece or from none
            if varying_dims(compress(p)) == varying_dims(compress(pieces[0])):
                ctx.uf.union_pairs(pieces[0], p)
        res.append(compress(torch.stack(pieces, dim)))
    ctx.set(out, res)


def constant_pad(ctx, func, args, kwargs, out) -> None:
    x, pad = args[0], list(args[1])
    res = []
    for s in ctx.get(x):
        s = align(s, x.dim())
        p = list(pad)
        fix = []
        for i in range(len(p) // 2):
            d = x.dim() - 1 - i
            if s.shape[d] == 1:
                p[2 * i] = p[2 * i + 1] = 0
            elif p[2 * i] or p[2 * i + 1]:
                fix.append(d)
        if not fix:
            res.append(s)
            continue
        full = _expanded(s, x)
        padded = F.pad(full, p, value=-1)
        holes = padded == -1
        if bool(holes.any()):
            padded[holes] = ctx.fresh_fixed(int(holes.sum()), "padding")
        res.append(compress(padded))
    ctx.set(out, res)


def channelwise(nsp: int) -> Rule:
    """Ops that act on each channel separately over the last `nsp` (spatial) dims: pooling, resizing."""

    def rule(ctx, func, args, kwargs, out) -> None:
        x = args[0]
        res = []
        keep = list(range(x.dim() - nsp))
        for s in ctx.get(x):
            s = align(s, x.dim())
            if not any(s.shape[d] > 1 for d in keep) and s.numel() > 1:
                continue  # labels only along the pooled/resized dims: consumed
            lab = along_dims(ctx, s, keep)
            res.append(lab.reshape(list(lab.shape) + [1] * nsp))
        for o in _outs(out):
            if o.dim() == x.dim():
                ctx.set(o, res)

    return rule


def mutate_fixed(ctx, func, args, kwargs, out) -> None:
    for s in ctx.get(args[0]):
        ctx.uf.mark_fixed(s, f"written by {func.__name__} ({ctx.where()})")


# ---------------------------------------------------------------- contractions
def _per_batch(ctx, t: torch.Tensor, drop: int) -> torch.Tensor | None:
    """Labels of t's contracted positions, batch dims kept (dim `drop`, the free matrix dim, unioned away)."""
    found = None
    keep = [d for d in range(t.dim()) if d != drop % t.dim()]
    for s in ctx.get(t):
        s = align(s, t.dim())
        if s.shape[keep[-1]] == 1:
            continue
        lab = along_dims(ctx, s, keep)
        if found is None:
            found = lab
        else:
            found, lab = torch.broadcast_tensors(found, lab)
            ctx.uf.union_pairs(found, lab)
    return found


def _union_per_batch(ctx, A: torch.Tensor, drop_a: int, B: torch.Tensor, drop_b: int) -> bool:
    """Whole-head mode: a batched contraction couples A and B position by position in every batch entry
    (head h of q with head h of k), not across the batch. False when a side carries no labels."""
    la, lb = _per_batch(ctx, A, drop_a), _per_batch(ctx, B, drop_b)
    if la is None or lb is None:
        return False
    la, lb = align(la, lb.dim()), align(lb, la.dim())
    ctx.uf.union_pairs(*torch.broadcast_tensors(la, lb))
    return True


def _per_head_only(ctx, s: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> bool:
    """Attention probabilities (A) @ values (B) when head_dim, not the head, is the pruning unit: labels of A
    that vary only over the batch (head) dims come from values added per head to the scores (T5's relative
    position bias, ALiBi slopes). Heads are never removed in this mode, so those values stay whole; carried
    into the output they would tie every head_dim position to them."""
    if ctx.heads or A.dim() < 3 or ctx.is_state(A) or ctx.is_state(B):
        return False
    batch = set(range(A.dim() - 2))
    vs = set(varying_dims(s))
    if not vs or not vs <= batch:
        return False
    off = A.dim() - B.dim()
    return any(align(t, B.dim()).shape[d - off] > 1 for t in ctx.get(B) for d in vs if d - off >= 0)


def _pin_unmatched_batch(ctx, X: torch.Tensor, Y: torch.Tensor, ndim: int) -> None:
    """Batch dims of a batched product: X's labelled batch positions meet Y's. Where Y has that dim at full
    size but no labels (an index grid, a one-hot of data, a constant), Y keeps its size after pruning; a
    group cut to one channel would then broadcast against it silently (a different model, no error), so
    X's channels there are pinned."""
    if ndim < 3:
        return
    y_shape = [1] * (ndim - Y.dim()) + list(Y.shape)
    y_lab = {d for t in ctx.get(Y) if t.dim() <= ndim for d in varying_dims(align(t, ndim))}
    for s in ctx.get(X):
        if s.dim() > ndim:
            continue
        s = align(s, ndim)
        vd = varying_dims(s)  # only channels that live on batch dims alone change a batch dim's size
        if vd and all(d < ndim - 2 for d in vd) and any(y_shape[d] > 1 and d not in y_lab for d in vd):
            ctx.uf.mark_fixed(s, f"a batched product meets this dim, in the other operand, at full size with no "
                                 f"labels: it cannot shrink ({ctx.where()})")


def _contract(ctx, A: torch.Tensor, B: torch.Tensor, out: torch.Tensor, bias=None) -> None:
    k = A.shape[-1]
    _pin_unmatched_batch(ctx, A, B, out.dim())
    _pin_unmatched_batch(ctx, B, A, out.dim())
    macs = float(out.numel()) * k
    kb = ctx.key_of(B)
    wk = kb or ctx.key_of(A)
    ctx.add_macs(B if kb else (A if wk else None), macs)
    if not (ctx.heads and A.dim() > 1 and B.dim() > 1 and _union_per_batch(ctx, A, -2, B, -1)):
        ctx.uf.union_pairs(dim_labels(ctx, A, -1, k), dim_labels(ctx, B, -2 if B.dim() > 1 else 0, k))
    if not (ctx.is_state(A) or ctx.is_state(B)):  # attention scores: often scaled by 1/sqrt(head size)
        for s in ctx.get(A):
            if align(s, A.dim()).shape[-1] > 1:
                ctx.uf.note(s, SCORES_NOTE)
    srcs = []
    for s in ctx.get(A):
        s = align(s, A.dim())
        if s.shape[-1] == 1 and varying_dims(s) and A.dim() > 1:
            if _per_head_only(ctx, s, A, B):
                ctx.uf.mark_fixed(s, f"per-head values (a position bias) while head_dim is the unit ({ctx.where()})")
                continue
            srcs.append(s)
    for s in ctx.get(B):
        s = align(s, B.dim())
        if B.dim() > 1 and s.shape[-2] == 1 and varying_dims(s):
            ctx.uf.mark_produced(s)
            srcs.append(s)
    res = [align(s, out.dim()) for s in srcs if s.dim() <= out.dim()]
    per_arg = [res]
    if bias is not None:
        per_arg.append([b for b in ctx.get(bias) if b.dim() <= out.dim()])
    ctx.set(out, merge_sources(ctx, per_arg, out.dim()))


def mm(ctx, func, args, kwargs, out) -> None:
    _contract(ctx, args[0], args[1], out)


def dot(ctx, func, args, kwargs, out) -> None:
    """Inner product of two vectors (spectral norm's u . W v): a sum, exact under zeroing; the result is a scalar."""
    a, b = args[0], args[1]
    ctx.uf.union_pairs(dim_labels(ctx, a, 0), dim_labels(ctx, b, 0))


def weight_norm(ctx, func, args, kwargs, out) -> None:
    """w = g * v / ||v|| (norm over every dim but `dim`): g follows v along `dim`; the norm is a sum of squares,
    so removing a slice of v and zeroing it change it alike (exact)."""
    v, g, dim = args[0], args[1], int(args[2]) if len(args) > 2 else 0
    w, norms = _outs(out)[:2]
    pointwise(ctx, func, (v, g), {}, [w])
    ctx.set(norms, ctx.get(g))
    if g.dim() and g.shape[dim % g.dim()] > 1:  # a zeroed slice along `dim` is 0 / ||0||: NaN in the zeroed original
        ctx.uf.note(dim_labels(ctx, g, dim % g.dim()), "weight norm: a zeroed slice divides 0 by its zero norm "
                    "(the pruned model is fine, the zeroing check cannot match it)")


def addmm(ctx, func, args, kwargs, out) -> None:
    _contract(ctx, args[1], args[2], out, bias=args[0])


def grouped_mm(ctx, func, args, kwargs, out) -> None:
    """Mixture-of-experts products (torch._grouped_mm): rows of `a` routed to experts, `b` (experts, K, N).

    Channel k of the input and channel n of the output are the same position in every expert (one width
    for all of them), so the experts dim is united away; which expert a row meets is data, not a channel."""
    a, b = args[0], args[1]
    k = a.shape[-1]
    klab, outlab = dim_labels(ctx, b, -2, k), dim_labels(ctx, b, -1)
    ctx.uf.union_pairs(dim_labels(ctx, a, -1, k), klab)
    ctx.uf.mark_produced(outlab)
    ctx.add_macs(b, float(out.numel()) * k)
    # the kernel wants 16-byte aligned rows: widths stay multiples of 16 bytes' worth of elements
    need = max(1, 16 // a.element_size())
    ctx.__dict__.setdefault("width_multiples", []).append((torch.cat([klab, outlab]), need))
    bias = args[3] if len(args) > 3 else kwargs.get("bias")
    if isinstance(bias, torch.Tensor) and ctx.get(bias):
        ctx.uf.union_pairs(dim_labels(ctx, bias, -1), outlab)
    ctx.set(out, [placed(outlab, out.dim(), -1)])


def convolution(ctx, func, args, kwargs, out) -> None:
    x, w, b = args[0], args[1], args[2]
    transposed, groups = bool(args[6]), int(args[8])
    uf = ctx.uf
    cin = x.shape[1]
    if not transposed:
        cout, cin_g = w.shape[0], w.shape[1]
        IL, W0, W1 = dim_labels(ctx, x, 1, cin), dim_labels(ctx, w, 0), dim_labels(ctx, w, 1)
        if groups == 1:
            uf.union_pairs(IL, W1)
        elif cin_g == 1:  # depthwise (with channel multiplier): input k feeds outputs of group k
            uf.union_pairs(IL.repeat_interleave(cout // groups), W0)
        else:  # grouped: every group keeps the same positions
            g_in = IL.reshape(groups, cin_g)
            uf.union_pairs(g_in, W1.expand(groups, cin_g))
            g_out = W0.reshape(groups, cout // groups)
            uf.union_pairs(g_out, g_out[:1].expand_as(g_out))
        outlab = W0
    else:
        IL, W0, W1 = dim_labels(ctx, x, 1, cin), dim_labels(ctx, w, 0), dim_labels(ctx, w, 1)
        if groups == 1:
            uf.union_pairs(IL, W0)
            outlab = W1
        else:
            for lab in (IL, W0, W1):
                uf.mark_fixed(lab, f"grouped transposed convolution ({ctx.where()})")
            outlab = W1.repeat(groups)
    uf.mark_produced(outlab)
    ctx.add_macs(w, float(out.numel()) * w[0].numel() if not transposed else float(x.numel()) * w[0].numel())
    if b is not None:
        uf.union_pairs(dim_labels(ctx, b, 0), outlab)
    ctx.set(out, [placed(outlab, out.dim(), 1)])


def embedding(ctx, func, args, kwargs, out) -> None:
    w = args[0]
    uf = ctx.uf
    uf.mark_fixed(dim_labels(ctx, w, 0), "embedding rows are indexed by data")
    lab = dim_labels(ctx, w, 1)
    uf.mark_produced(lab)
    ctx.set(out, [placed(lab, out.dim(), -1)])


# ---------------------------------------------------------------- normalisation
def _bn_training(func, args) -> bool:
    """Whether the batch norm computes statistics from its input (training mode, or no running stats)."""
    name = func.__name__.split(".")[0]
    if name in ("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"):
        if getattr(func, "_overloadname", "") == "no_stats":  # (input, w, b, training, momentum, eps)
            return bool(args[3])
        return bool(args[5]) if len(args) > 5 else True
    return name == "_batch_norm_with_update"


def batch_norm(ctx, func, args, kwargs, out) -> None:
    x = args[0]
    c = x.shape[1]
    if _bn_training(func, args):
        # statistics over every dim but 1: labels varying there are mixed (a weight standardised over its
        # input channels, as timm's StdConv2d / ScaledStdConv2d do with F.batch_norm on weight.reshape(1, O, -1))
        for s in ctx.get(x):
            s = align(s, x.dim())
            if any(s.shape[d] > 1 for d in range(x.dim()) if d != 1):
                what = "a parameter" if ctx.is_state(x) or ctx.key_of(x) else "an activation"
                ctx.uf.note(s, f"batch-norm statistics of {what} over these channels (weight standardisation)")
    IL = dim_labels(ctx, x, 1, c)
    for t in args[1:5]:
        if isinstance(t, torch.Tensor) and t.dim() == 1 and t.shape[0] == c:
            ctx.uf.union_pairs(dim_labels(ctx, t, 0), IL)
    first = _outs(out)[0]
    ctx.set(first, ctx.get(x))


def layer_norm(ctx, func, args, kwargs, out) -> None:
    x, shape = args[0], list(args[1])
    w = args[2] if len(args) > 2 else None
    b = args[3] if len(args) > 3 and isinstance(args[3], torch.Tensor) else None
    k = len(shape)
    dims = list(range(x.dim() - k, x.dim()))
    for s in ctx.get(x):
        s = align(s, x.dim())
        if not any(s.shape[d] > 1 for d in dims):
            continue
        tail = along_dims(ctx, s, dims)
        if tail.numel() > 1:
            ctx.uf.note(tail, "layer/rms norm normalises over these channels")
        for p in (w, b):
            if isinstance(p, torch.Tensor):
                for ps in ctx.get(p):
                    a, c = torch.broadcast_tensors(align(ps, k), tail)
                    ctx.uf.union_pairs(a, c)
    first = _outs(out)[0]
    ctx.set(first, ctx.get(x))


def group_norm(ctx, func, args, kwargs, out) -> None:
    x, w, b, groups = args[0], args[1], args[2], int(args[6])
    c = x.shape[1]
    IL = dim_labels(ctx, x, 1, c)
    for p in (w, b):
        if isinstance(p, torch.Tensor):
            ctx.uf.union_pairs(dim_labels(ctx, p, 0), IL)
    g = IL.reshape(groups, c // groups)
    ctx.uf.union_pairs(g, g[:1].expand_as(g))
    ctx.uf.note(IL, "group norm normalises over these channels")
    ctx.set(_outs(out)[0], ctx.get(x))


# ---------------------------------------------------------------- reductions
def reduction(ctx, func, args, kwargs, out) -> None:
    x = args[0]
    name = func.__name__.split(".")[0]
    dims = None
    if len(args) > 1 and isinstance(args[1], (list, tuple)):
        dims = list(args[1])
    elif len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool):
        dims = [args[1]]
    elif name == "linalg_vector_norm" and len(args) > 2 and args[2] is not None:
        dims = list(args[2]) if isinstance(args[2], (list, tuple)) else [args[2]]
    if "dim" in kwargs and kwargs["dim"] is not None:
        dims = list(kwargs["dim"]) if isinstance(kwargs["dim"], (list, tuple)) else [kwargs["dim"]]
    if not dims:
        dims = list(range(x.dim()))
    dims = [d % max(1, x.dim()) for d in dims]
    outs = _outs(out)
    res = []
    for s in ctx.get(x):
        s = align(s, x.dim())
        if any(s.shape[d] > 1 for d in dims):
            if _one_unit_along(ctx, s, dims):  # each output element reads one channel (e.g. over stacked paths)
                kept = _first_along(s, dims)
                if varying_dims(compress(kept)):
                    res.append(kept)
                continue
            if name not in _EXACT_REDUCE:
                ctx.uf.note(s, f"{name} over channels")
            continue
        res.append(s)
    for o in outs:
        if o.dim() == x.dim():
            ctx.set(o, res)
        else:
            keep = [d for d in range(x.dim()) if d not in dims]
            ctx.set(o, [r.permute(*keep, *dims).reshape([r.shape[d] for d in keep]) for r in res])


def _one_unit_along(ctx, s: torch.Tensor, dims: list[int]) -> bool:
    """Whether every line of s along `dims` holds a single channel (one union-find root: the paths stacked by
    torch.stack, the outer factor of a split view): then a reduction or softmax over `dims` reads whole
    channels only (a channel's line goes, or stays as it was), so it is exact whatever it computes, and its
    output keeps the labels of the other dims."""
    roots = torch.from_numpy(ctx.uf.roots(s.reshape(-1).numpy())).reshape(s.shape)
    return bool((roots == _first_along(roots, dims)).all())


def _first_along(s: torch.Tensor, dims: list[int]) -> torch.Tensor:
    for d in dims:
        s = s.narrow(d, 0, 1)
    return s


def softmax(ctx, func, args, kwargs, out) -> None:
    x, dim = args[0], args[1]
    for s in ctx.get(x):
        s = align(s, x.dim())
        if s.shape[dim % x.dim()] > 1 and not _one_unit_along(ctx, s, [dim % x.dim()]):
            ctx.uf.note(s, "softmax over channels")
    ctx.set(out, ctx.get(x))


def position_dependent(ctx, func, args, kwargs, out) -> None:
    """cumsum/sort/topk along a labelled dim depend on channel positions: pin those channels."""
    x = args[0]
    pos = 2 if func.__name__.split(".")[0] == "topk" else 1  # topk(x, k, dim=-1): args[1] is k
    dim = args[pos] if len(args) > pos and isinstance(args[pos], int) else kwargs.get("dim", -1)
    res = []
    for s in ctx.get(x):
        s = align(s, x.dim())
        if s.shape[dim % x.dim()] > 1:
            ctx.uf.mark_fixed(s, f"{func.__name__} depends on channel order ({ctx.where()})")
        res.append(s)
    for o in _outs(out):
        if o.shape == x.shape:
            ctx.set(o, res)


HEAD_DIM_NOTE = "attention scale depends on head_dim"
SCORES_NOTE = "a product of two activations (attention scores) may be scaled by head_dim"


def _kv_repeat(q: torch.Tensor, k: torch.Tensor) -> int:
    """Grouped-query attention (sdpa's enable_gqa): k/v hold fewer heads than q, kv head g serving q heads
    g*r .. g*r+r-1. Returns r (1 without grouping)."""
    if q.dim() < 3 or k.dim() < 3 or q.shape[-3] == k.shape[-3] or q.shape[-3] % k.shape[-3]:
        return 1
    return q.shape[-3] // k.shape[-3]


def _union_heads_gqa(ctx, q: torch.Tensor, k: torch.Tensor, rep: int) -> bool:
    """Whole-head mode with grouped kv heads: q head h is one unit with kv head h // rep."""
    la, lb = _per_batch(ctx, q, -2), _per_batch(ctx, k, -2)
    if la is None or lb is None:
        return False
    la, lb = align(la, lb.dim()), align(lb, la.dim())
    if lb.shape[-2] > 1:
        lb = lb.repeat_interleave(rep, dim=-2)
    ctx.uf.union_pairs(*torch.broadcast_tensors(la, lb))
    return True


def sdpa(ctx, func, args, kwargs, out) -> None:
    q, k, v = args[0], args[1], args[2]
    e = q.shape[-1]
    rep = _kv_repeat(q, k)
    if ctx.heads and (_union_heads_gqa(ctx, q, k, rep) if rep > 1 else _union_per_batch(ctx, q, -2, k, -2)):
        qls = ctx.get(q)  # whole heads go: the note is dropped for those whose head_dim cannot change
    else:
        qls, kl = [dim_labels(ctx, q, -1, e)], dim_labels(ctx, k, -1, e)
        ctx.uf.union_pairs(qls[0], kl)
    if kwargs.get("scale") is None:
        for ql in qls:
            ctx.uf.note(ql, HEAD_DIM_NOTE)
    res = []
    for s in ctx.get(v):
        s = align(s, v.dim())
        if s.shape[-1] == 1:
            continue
        lab = along_dims(ctx, s, [d for d in range(v.dim()) if d != v.dim() - 2])
        if rep > 1 and lab.dim() >= 2 and lab.shape[-2] > 1:
            lab = lab.repeat_interleave(rep, dim=-2)  # output head h reads kv head h // rep
        res.append(lab.unsqueeze(-2))
    ctx.set(_outs(out)[0], res)


def features_last(ctx, func, args, kwargs, out) -> None:
    """Ops that regroup time and batch but keep the last (feature) dim: packing and padding sequences."""
    x = args[0]
    if not any(align(s, x.dim()).shape[-1] > 1 for s in ctx.get(x)):
        return
    o = _outs(out)[0]
    ctx.set(o, [placed(dim_labels(ctx, x, -1), o.dim(), -1)])


def no_labels(ctx, func, args, kwargs, out) -> None:
    """Results that carry no channel identity (shapes, masks from comparisons on indices...)."""


def pixel_shuffle(ctx, func, args, kwargs, out) -> None:
    x, r = args[0], int(args[1])
    name = func.__name__.split(".")[0]
    res = []
    for s in ctx.get(x):
        s = align(s, x.dim())
        cdim = x.dim() - 3
        lab = along(ctx.uf, s, cdim)
        if name == "pixel_shuffle":
            blocks = lab.reshape(-1, r * r)
            ctx.uf.union_pairs(blocks, blocks[:, :1].expand_as(blocks))
            res.append(placed(blocks[:, 0].contiguous(), x.dim(), cdim))
        else:
            res.append(placed(lab.repeat_interleave(r * r), x.dim(), cdim))
    ctx.set(out, res)


# ---------------------------------------------------------------- the table
_IDENTITY = ["clone", "detach", "alias", "_to_copy", "contiguous", "lift_fresh", "lift_fresh_copy",
             "native_dropout", "dropout", "feature_dropout", "_conj", "resolve_conj", "resolve_neg",
             "to", "_local_scalar_dense"]
_MOVEMENT = ["view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "unsqueeze",
             "squeeze", "select", "slice", "narrow", "split", "split_with_sizes", "unbind", "chunk",
             "flip", "roll", "repeat", "unfold", "movedim", "as_strided", "view_copy", "expand_copy",
             "permute_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy", "slice_copy",
             "select_copy", "tensor_split", "channel_shuffle", "native_channel_shuffle", "unflatten",
             "flatten", "repeat_interleave", "index", "index_select", "gather", "take_along_dim",
             "_unsafe_index", "masked_select", "diagonal", "tril", "triu"]
_REDUCE = ["sum", "mean", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean", "prod",
           "logsumexp", "linalg_vector_norm", "norm", "argmax", "argmin", "any", "all", "nansum", "median"]
_CHANNELWISE = {
    "max_pool1d": 1, "max_pool2d_with_indices": 2, "max_pool3d_with_indices": 3, "avg_pool1d": 1,
    "avg_pool2d": 2, "avg_pool3d": 3, "_adaptive_avg_pool2d": 2, "_adaptive_avg_pool3d": 3,
    "adaptive_max_pool2d": 2, "adaptive_max_pool1d": 1, "adaptive_max_pool3d": 3, "adaptive_avg_pool1d": 1,
    "upsample_nearest1d": 1, "upsample_nearest2d": 2, "upsample_nearest3d": 3, "upsample_linear1d": 1,
    "upsample_bilinear2d": 2, "upsample_bicubic2d": 2, "upsample_trilinear3d": 3,
    "_upsample_bilinear2d_aa": 2, "_upsample_bicubic2d_aa": 2, "_upsample_nearest_exact1d": 1,
    "_upsample_nearest_exact2d": 2, "_upsample_nearest_exact3d": 3, "reflection_pad1d": 1,
    "reflection_pad2d": 2, "reflection_pad3d": 3, "replication_pad1d": 1, "replication_pad2d": 2,
    "replication_pad3d": 3, "_adaptive_avg_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3, "lp_pool2d": 2,
    "max_unpool2d": 2, "im2col": 2,
}

RULES: dict[str, Rule] = {
    **{n: identity for n in _IDENTITY},
    **{n: movement for n in _MOVEMENT},
    **{n: reduction for n in _REDUCE},
    **{n: channelwise(k) for n, k in _CHANNELWISE.items()},
    "cat": cat, "concat": cat, "stack": stack,
    "constant_pad_nd": constant_pad, "pad": constant_pad,
    "copy_": copy_, "copy": pointwise,
    "mm": mm, "bmm": mm, "matmul": mm, "mv": mm, "dot": dot, "vdot": dot,
    "_weight_norm_interface": weight_norm, "addmm": addmm, "baddbmm": addmm, "addbmm": addmm,
    "_grouped_mm": grouped_mm,
    "convolution": convolution, "_convolution": convolution,
    "embedding": embedding,
    "native_batch_norm": batch_norm, "_native_batch_norm_legit_no_training": batch_norm,
    "_native_batch_norm_legit": batch_norm, "_batch_norm_with_update": batch_norm,
    "_batch_norm_no_update": batch_norm, "cudnn_batch_norm": batch_norm, "miopen_batch_norm": batch_norm,
    "native_layer_norm": layer_norm, "_fused_rms_norm": layer_norm, "rms_norm": layer_norm,
    "native_group_norm": group_norm,
    "_softmax": softmax, "_log_softmax": softmax, "softmax": softmax, "log_softmax": softmax,
    "_safe_softmax": softmax,
    "cumsum": position_dependent, "cumprod": position_dependent, "sort": position_dependent,
    "topk": position_dependent, "argsort": position_dependent,
    "_scaled_dot_product_flash_attention_for_cpu": sdpa, "_scaled_dot_product_flash_attention": sdpa,
    "_scaled_dot_product_efficient_attention": sdpa, "_scaled_dot_product_cudnn_attention": sdpa,
    "_scaled_dot_product_attention_math": sdpa, "scaled_dot_product_attention": sdpa,
    "_scaled_dot_product_fused_attention_overrideable": sdpa,
    "index_put": mutate_fixed, "index_put_": mutate_fixed, "scatter": mutate_fixed, "scatter_": mutate_fixed,
    "scatter_add": mutate_fixed, "scatter_add_": mutate_fixed, "masked_scatter": mutate_fixed,
    "index_add": mutate_fixed, "index_copy": mutate_fixed, "_index_put_impl_": mutate_fixed,
    "fill_": no_labels, "zero_": no_labels, "sym_size": no_labels, "sym_stride": no_labels,
    "sym_numel": no_labels, "sym_storage_offset": no_labels, "is_nonzero": no_labels, "equal": no_labels,
    "nonzero": no_labels, "_assert_async": no_labels, "empty_like": no_labels, "zeros_like": no_labels,
    "ones_like": no_labels, "full_like": no_labels, "rand_like": no_labels, "randn_like": no_labels,
    "new_zeros": no_labels, "new_ones": no_labels, "new_empty": no_labels, "new_full": no_labels,
    "bernoulli": no_labels, "bernoulli_": no_labels, "_assert_tensor_metadata": no_labels,
    "pixel_shuffle": pixel_shuffle, "pixel_unshuffle": pixel_shuffle,
    "_pack_padded_sequence": features_last, "_pad_packed_sequence": features_last,
}


_ACTIVATIONS = {"hardswish", "hardsigmoid", "silu", "mish", "gelu", "relu", "relu6", "hardtanh", "elu", "selu",
                "celu", "leaky_relu", "softplus", "sigmoid", "tanh", "_prelu_kernel", "prelu", "rrelu",
                "threshold", "glu_placeholder"}


def rule_for(func) -> Rule | None:
    name = func.__name__.split(".")[0]
    if name in RULES:
        return RULES[name]
    if torch.Tag.pointwise in getattr(func, "tags", ()):
        return pointwise
    if name.endswith("_") and name[:-1] in RULES:
        return RULES[name[:-1]]
    if name.rstrip("_") in _ACTIVATIONS:
        return pointwise
    if name.endswith("_"):
        packet = getattr(torch.ops.aten, name[:-1], None)
        for ov in (packet.overloads() if packet is not None else []):
            if torch.Tag.pointwise in getattr(packet, ov).tags:
                return pointwise
    return None
