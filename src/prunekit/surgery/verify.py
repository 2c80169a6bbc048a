"""Check a pruned model against its original with the removed slices zeroed."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..graph.plan import PruningPlan
from ..train.evaluation import recalibrate_bn
from ..utils.inputs import call_model, output_tensors
from .checks import PlanLike, fitted_removals


@dataclass
class VerifyReport:
    exact: bool
    max_abs_diff: float
    max_rel_diff: float
    params_before: int
    params_after: int
    reasons: list[str] = field(default_factory=list)
    output_shapes_match: bool = True
    input_sensitivity: float = float("nan")  # relative output change when the input is perturbed

    @property
    def weak(self) -> bool:
        """The outputs barely depend on the input (a fresh model in eval mode often just outputs its bias):
        agreement then proves little. `make_input_sensitive(model, inputs)` or real data fixes that."""
        return self.input_sensitivity < 1e-3

    def __str__(self) -> str:
        kind = "exact" if self.exact else "approximate"
        why = f" ({'; '.join(self.reasons)})" if self.reasons and not self.exact else ""
        weak = (f"; WEAK CHECK: the output changes by {self.input_sensitivity:.1e} (relative) when the input "
                f"does, see make_input_sensitive") if self.weak else ""
        return (f"{kind}: max |diff| = {self.max_abs_diff:.3g} (relative {self.max_rel_diff:.3g}), params "
                f"{self.params_before:,} -> {self.params_after:,}{why}{weak}")


def zeroed_copy(original: nn.Module, plan: PruningPlan) -> nn.Module:
    """A copy of the original model with every slice of plan.removals() set to zero."""
    z = copy.deepcopy(original)
    sd = z.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, dim, idx in plan.removals():
            t = sd[key]
            t.index_fill_(dim, torch.tensor(idx, dtype=torch.long, device=t.device), 0.0)
    return z


def check_made_from(original: nn.Module, pruned: nn.Module, plan: PlanLike) -> PruningPlan:
    """Refuse a pair that ``plan`` does not relate: the plan must fit ``original`` and every tensor of
    ``pruned`` must equal, bit for bit, the original's tensor with the plan's slices removed.

    Returns:
        The plan as a PruningPlan (``plan`` may be any form ``pk.apply`` takes: its dict, JSON text, a path).

    Raises:
        PlanMismatchError: the plan was not made for ``original``.
        ValueError: ``pruned`` was not made from ``original`` by ``plan`` (another model, other weights, or
            weights changed after pruning); the message names the first tensor that differs.
    """
    plan, removals = fitted_removals(original, plan)
    cuts: dict[str, list[tuple[int, list[int]]]] = {}
    for key, dim, idx in removals:
        cuts.setdefault(key, []).append((dim, idx))
    orig = {k: v for k, v in original.state_dict().items() if isinstance(v, torch.Tensor)}
    new = {k: v for k, v in pruned.state_dict().items() if isinstance(v, torch.Tensor)}
    odd = sorted(set(orig) ^ set(new))
    if odd:
        raise ValueError(f"the pruned model was not made from this original: tensors {odd[:5]} are in only one of them")
    for key, t in orig.items():
        for dim, idx in cuts.get(key, []):
            drop = torch.zeros(t.shape[dim], dtype=torch.bool)
            drop[torch.tensor(idx, dtype=torch.long)] = True
            t = t.index_select(dim, torch.nonzero(~drop).reshape(-1).to(t.device))
        other = new[key]
        if t.shape != other.shape:
            raise ValueError(f"the pruned model was not made from this original by this plan: {key} would have shape "
                             f"{list(t.shape)}, the pruned model has {list(other.shape)}")
        if not torch.equal(t.to(other.device), other):
            diff = (t.to(other.device).double() - other.double()).abs().max()
            raise ValueError(f"the pruned model was not made from this original by this plan: the kept slices of {key} "
                             f"differ (max |diff| = {float(diff):.3g}); verify compares a pruned model with the very "
                             "model it was cut from, before any fine-tuning")
    return plan


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@torch.no_grad()
def verify(original: nn.Module, pruned: nn.Module, plan: PlanLike, example_inputs, rtol: float = 1e-4) -> VerifyReport:
    """Compare `pruned` with `original` whose removed slices are zeroed, in eval mode.

    An original that `pruned` was not cut from by `plan` is refused first (see `check_made_from`).

    Args:
        original: the unpruned model (not changed: a zeroed copy is compared).
        pruned: the model `plan` was applied to.
        plan: the plan, in any form pk.apply takes (PruningPlan, dict, JSON text, file path).
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        rtol: the agreement required, relative to the largest output magnitude.

    Returns:
        VerifyReport: `exact` (every output agrees to `rtol`), `max_abs_diff`, `max_rel_diff`, the parameter
        counts, and `reasons` naming the operations that mix pruned channels when it is not exact
        (LayerNorm, GroupNorm, means over channels, attention scaling).

    Example:
        >>> report = pk.verify(model, pruned, plan, x)
        >>> report.exact, report.max_rel_diff < 1e-4
        (True, True)
    """
    if not (isinstance(rtol, (int, float)) and not isinstance(rtol, bool) and rtol >= 0):  # nan fails too
        raise ValueError(f"rtol must be a number >= 0, got {rtol!r}")
    plan = check_made_from(original, pruned, plan)  # the plan forms pk.apply takes, as a PruningPlan
    z = zeroed_copy(original, plan)
    z.eval()
    was = pruned.training
    pruned.eval()
    try:
        a = output_tensors(call_model(z, example_inputs))
        b = output_tensors(call_model(pruned, example_inputs))
    finally:
        pruned.train(was)
    shapes_ok = len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    if not shapes_ok:
        return VerifyReport(False, float("inf"), float("inf"), _n_params(original), _n_params(pruned),
                            ["output shapes differ"], False)
    abs_diff = max((float((x.float() - y.float()).abs().max()) if x.numel() else 0.0) for x, y in zip(a, b))
    scale = max((float(x.float().abs().max()) if x.numel() else 0.0) for x in a) or 1.0
    rel = abs_diff / scale
    exact = rel <= rtol
    moved = output_tensors(call_model(z, _perturbed(example_inputs)))
    sens = max((float((x.float() - y.float()).abs().max()) if x.numel() else 0.0) for x, y in zip(a, moved)) / scale
    return VerifyReport(exact, abs_diff, rel, _n_params(original), _n_params(pruned),
                        [] if exact else (plan.reasons() or ["numerical difference with no known cause"]),
                        input_sensitivity=sens)


def _perturbed(inputs, seed: int = 1):
    """Other inputs of the same kind: floats redrawn at the same scale, integers (token ids) shuffled."""
    gen = torch.Generator().manual_seed(seed)

    def move(t):
        if not isinstance(t, torch.Tensor) or not t.numel():
            return t
        if t.is_floating_point():
            noise = torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)
            return noise * (t.float().std().nan_to_num(1.0).clamp_min(1e-3)).to(t.dtype) + t.mean()
        if t.dtype != torch.bool:
            return t.flatten()[torch.randperm(t.numel(), generator=gen).to(t.device)].reshape(t.shape)
        return t

    return torch.utils._pytree.tree_map(move, inputs)


@torch.no_grad()
def make_input_sensitive(model: nn.Module, example_inputs, batch: int = 8, seed: int = 0) -> nn.Module:
    """Prepare an untrained model so that `verify` compares something: in place, re-draw every all-zero weight
    matrix (zero-initialised classifiers, as torchvision's ViT head) and set BatchNorm running statistics
    from a random batch shaped like `example_inputs`. A fresh deep network in eval mode otherwise often
    gives the same output for every input (its bias), which any pruning would "match". Left in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.dim() > 1 and p.is_floating_point() and not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)

    def widen(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        if t.is_floating_point():
            return torch.randn((batch, *t.shape[1:]), generator=gen, dtype=t.dtype).to(t.device)
        return t[:1].expand(batch, *t.shape[1:]).clone()

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    recalibrate_bn(model, [(torch.utils._pytree.tree_map(widen, example_inputs), None)], device)
    return model
