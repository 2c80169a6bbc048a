"""Apply a PruningPlan: slice parameters, buffers and optimizer state, then patch module attributes."""
from __future__ import annotations

import torch
from torch import nn

from ..graph.plan import PruningPlan
from ..graph.trace import HEAD_DIM_ATTRS, HEADS_ATTRS, KV_HEADS_ATTRS
from .checks import PlanLike, fitted_removals
from ..utils.gcpause import without_gc
from .patches import PatchContext, model_hooks, patch_for, user_patched

PLANS_ATTR = "_prunekit_plans"  # the plans applied to a model, oldest first (what pk.save records)
WIDTH_ATTRS = ("hidden_dim", "embed_dim", "dim", "d_model", "hidden_size", "channels", "num_channels", "width",
               "in_dim", "out_dim", "num_features", "feat_dim", "embedding_dim", "inner_dim", "mid_channels",
               "hidden_features", "embed_dims")
INNER_ATTRS = ("inner_dim", "all_head_size", "hidden_dim_attn", "attn_dim")


def _tensor_slots(model: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    slots = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        prefix = mname + "." if mname else ""
        for n, p in mod._parameters.items():
            if p is not None:
                slots[prefix + n] = (mod, n, True)
        for n, b in mod._buffers.items():
            if b is not None:
                slots[prefix + n] = (mod, n, False)
    return slots


@without_gc
@torch.no_grad()
def apply(model: nn.Module, plan: PlanLike, optimizer: torch.optim.Optimizer | None = None,
          allow_unshaped: bool = False) -> nn.Module:
    """Remove the plan's channels from `model` in place and return it (now physically smaller).

    Before anything changes the plan is checked against the model (`surgery.checks.check_plan_fits`: kept
    lists, recorded shapes, index ranges, the model identity), so a plan made for another model raises with
    the model untouched.

    Args:
        model: the model the plan was made for.
        plan: a PruningPlan, its dict form, JSON text (a string starting with "{") or a plan file path.
        optimizer: an optimizer whose parameters and state are sliced along.
        allow_unshaped: apply a plan that records no shape for tensors it cuts (hand-made plans).

    Returns:
        `model`, pruned.

    Raises:
        PlanMismatchError: the plan does not fit `model`.
        PlanFormatError: the plan is malformed.
        TypeError: `plan` is none of the accepted kinds, or `optimizer` is not a torch optimizer.

    Example:
        >>> pruned = pk.apply(copy.deepcopy(model), "plan.json")  # doctest: +SKIP
    """
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (its state is sliced along), got "
                        f"{type(optimizer).__name__}")
    plan, removals = fitted_removals(model, plan, allow_unshaped=allow_unshaped)
    if not removals:
        return model
    slots = _tensor_slots(model)
    by_key: dict[str, list[tuple[int, list[int]]]] = {}
    for key, dim, idx in removals:
        by_key.setdefault(key, []).append((dim, idx))
    replaced: dict[int, nn.Parameter] = {}
    done: dict[int, torch.Tensor] = {}
    # every tensor as it is before any slicing, held until the end: a module reached under two names (tied)
    # must be sliced once, and an id is only unique while its tensor is alive
    originals = {key: getattr(slots[key][0], slots[key][1]) for key in by_key}
    for key, cuts in by_key.items():
        mod, name, is_param = slots[key]
        old = originals[key]
        if id(old) in done:  # shared (tied) tensor already sliced under another name
            new = done[id(old)]
        else:
            t = old.detach()
            keeps = []
            for dim, idx in cuts:
                drop = torch.zeros(t.shape[dim], dtype=torch.bool)
                drop[torch.tensor(idx, dtype=torch.long)] = True
                keep = torch.nonzero(~drop).reshape(-1).to(t.device)
                keeps.append((dim, keep))
                t = t.index_select(dim, keep)
            if is_param:  # index_select made a new tensor: no clone needed
                new = nn.Parameter(t, requires_grad=old.requires_grad)
                replaced[id(old)] = new
                if optimizer is not None:
                    _move_state(optimizer, old, new, keeps)
            else:
                new = t
            done[id(old)] = new
        if is_param:
            mod._parameters[name] = new
        else:
            mod._buffers[name] = new
    hooks = model_hooks()  # library glue (transformers: patches for its module types, then its config)
    for before, _ in hooks:
        before(model)
    _patch_attributes(model, plan, removals)
    for _, after in hooks:
        after(model)
    history = list(getattr(model, PLANS_ATTR, []))
    history.append(plan.to_dict())
    object.__setattr__(model, PLANS_ATTR, history)
    return model


def _move_state(opt: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter, keeps) -> None:
    for group in opt.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = opt.state.pop(old, None)
    if state is None:
        return
    moved = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.shape == old.shape:
            for dim, keep in keeps:
                v = v.index_select(dim, keep)
        moved[k] = v
    opt.state[new] = moved


def _patch_attributes(model: nn.Module, plan: PruningPlan, removals: list[tuple[str, int, list[int]]]) -> None:
    """Run each touched module's patch from the table (patches.py), then the name heuristics for the view
    sizes (head_dim, num_heads, widths) the plan recorded, for modules no user patch claims."""
    removed: dict[str, dict[tuple[str, int], list[int]]] = {}
    for key, dim, idx in removals:
        mname, _, tname = key.rpartition(".")
        removed.setdefault(mname, {})[(tname, dim)] = idx
    for name, mod in model.named_modules():
        fn = patch_for(mod)
        if fn is None:
            continue
        mine = removed.get(name, {})
        splits = [p for p in plan.patches if p["module"] == name or p["module"].startswith(name + ".") or not name]
        below = any(m == name or m.startswith(name + ".") or not name for m in removed)
        if not mine and not (user_patched(mod) and (splits or below)):
            continue  # prunekit's own patches only read the module's own tensors
        prefix = name + "." if name else ""
        old = {t: tuple(plan.shapes[prefix + t]) for t, _ in mine if prefix + t in plan.shapes}
        fn(mod, PatchContext(name=name, removed=dict(mine), old_shapes=old, splits=splits))
    _patch_views(model, plan)
    for mod in model.modules():  # after the head count may have changed (_patch_views set num_heads)
        if isinstance(mod, nn.MultiheadAttention):
            mod.head_dim = mod.embed_dim // mod.num_heads
        # nn.TransformerEncoder decides at construction whether its inference fast path packs the batch into a
        # nested tensor; its layers refuse that path with an odd head count, so a pruned odd count turns it off
        # (the module's own rule, applied to the new count) instead of failing in eval mode with a padding mask
        elif isinstance(mod, nn.TransformerEncoder) and getattr(mod, "use_nested_tensor", False):
            if any(getattr(getattr(layer, "self_attn", None), "num_heads", 0) % 2 for layer in mod.layers):
                mod.use_nested_tensor = False


def _patch_views(model: nn.Module, plan: PruningPlan) -> None:
    """Sizes written into views (head_dim, num_heads, widths) live in module attributes: update the ones
    whose names and old values match, in the module that ran the view or its nearest ancestor that has them."""
    mods = dict(model.named_modules())
    before: dict[int, dict[str, object]] = {}  # attribute values before any view patch: several patches of one
    # module (q heads 4 -> 2, then kv heads 2 -> 1) each match the value the view saw, not one set by another
    for p in plan.patches:
        mod = mods.get(p["module"])
        chain = [mod] if mod is not None else []
        # the view may run in a child op of the module holding the attribute: look at ancestors too
        parts = p["module"].split(".") if p["module"] else []
        for i in range(len(parts) - 1, -1, -1):
            anc = mods.get(".".join(parts[:i]))
            if anc is not None:
                chain.append(anc)
        outer = 1
        for f in p["factors"][:-1]:
            outer *= f
        kind = p.get("kind", "split")
        names = {"width": WIDTH_ATTRS, "heads": HEADS_ATTRS + KV_HEADS_ATTRS}.get(kind, HEAD_DIM_ATTRS)
        # the product heads x head_dim some modules keep (all_head_size): old and new values
        unit = p["factors"][-1] if kind == "heads" else outer
        for m in chain:
            if user_patched(m):
                break  # its registered patch got this size in ctx.splits
            changed = False
            for attr in names:
                if _original(before, m, attr) == p["old"]:
                    setattr(m, attr, p["new"])
                    changed = True
            for attr in (INNER_ATTRS if kind != "width" else ()):
                if _original(before, m, attr) == unit * p["old"]:
                    setattr(m, attr, unit * p["new"])
                    changed = True
            if changed:
                break


def _original(before: dict[int, dict[str, object]], m: nn.Module, attr: str) -> int | None:
    """The int value `attr` of `m` had before the first view patch read it (None if not an int)."""
    seen = before.setdefault(id(m), {})
    if attr not in seen:
        v = getattr(m, attr, None)
        seen[attr] = v if isinstance(v, int) and not isinstance(v, bool) else None
    return seen[attr]
