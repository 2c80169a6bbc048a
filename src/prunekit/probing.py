"""Tracing with the forward check: `pk.trace` traces, then probes each group on a shape-only copy.

Some couplings are invisible to a trace: code that computes a width from another tensor's size
(``qkv.reshape(B, N, 3, heads, C // heads)`` with C taken from the block input) ties the counts of two
groups. Such a group fails alone; the probe marks it not prunable and says why, instead of letting a plan
build a model that crashes. Probing applies plans, so it sits above both `graph` (tracing) and `surgery`
(applying): `graph` never imports `surgery`.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .graph.groups import DependencyGraph
from .graph.plan import PruningPlan
from .surgery.apply import apply
from .utils.inputs import call_model, output_tensors
from .utils.gcpause import without_gc
from .utils.copies import meta_copy, shared_copy, to_meta
from .utils.metaops import FastMeta

TRACER = importlib.import_module("prunekit.graph.trace")  # the module: its trace is looked up at each call


def trace(model: nn.Module, example_inputs: Any, ignore: Iterable | None = None, round_to: int = 1,
          prune_outputs: bool = False, filter_fn: Callable[[nn.Module, str], bool] | None = None,
          probe: bool = True, heads: bool = False) -> DependencyGraph:
    """Trace one forward of `model` on `example_inputs` and return its channel groups.

    Args:
        model: the model (not changed). Its labelled forward runs once in eval mode, on a meta-device copy
            (shapes only) when the model has over 5M parameter elements and runs there with the same
            labels (``graph.traced_on == "meta"``), else on the model itself, its mode restored.
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        ignore: module names, state_dict keys, module types, module objects or predicates whose tensors must
            not change (an entry that matches nothing raises).
        round_to: keep the width of every pruned tensor a multiple of this number (a channel repeated in
            several positions, e.g. an embedding dimension in each of 12 heads, is kept in fewer steps).
        prune_outputs: let the model's output channels be pruned too (default: they stay).
        filter_fn: ``filter_fn(module, name) -> False`` excludes a module, as ``ignore`` does (torchao style).
        probe: check each group by removing one channel in a meta-device copy and running the forward;
            groups that break it (hidden size couplings) are marked not prunable, with the error as reason.
        heads: in attention modules with a head-count attribute (num_heads, n_heads, ...), make whole heads
            the pruning unit (num_heads shrinks, head_dim stays) instead of head_dim (the default).

    Returns:
        The DependencyGraph: ``graph.groups`` (ChannelGroup: name, size, members, prunable, reason).

    Example:
        >>> graph = pk.trace(prunekit.models.create("resnet20"), torch.randn(1, 3, 32, 32))
        >>> len(graph.groups), [g.name for g in graph.prunable_groups()][:2]
        (13, ['conv1 (+3)', 'layer1.0.conv1'])
    """
    return TRACER.trace(model, example_inputs, ignore=ignore, round_to=round_to, prune_outputs=prune_outputs,
                        filter_fn=filter_fn, heads=heads, after=probe_groups if probe else None)


class NotRunnable(RuntimeError):
    """The unpruned model runs as neither a meta copy nor a shared copy, so no plan can be checked this way."""


class ShapeRunner:
    """Copies the model, applies a plan and runs it, returning the output shapes; ``runner(None)`` (and
    ``runner.ref``) gives those of the unpruned model.

    The copy lives on the meta device (shapes only: no memory, no arithmetic) whenever the unpruned model
    runs there; models with data-dependent steps that meta tensors cannot run use a copy sharing the real
    tensors instead. `expected`, the output shapes a trace of the same model on the same inputs recorded,
    spares the unpruned run: a plan whose meta run gives exactly them passes with one forward, and any other
    outcome is judged as without it (the unpruned model run on meta first, then real tensors if that fails).
    """

    def __init__(self, model: nn.Module, example_inputs: Any, expected: list | None = None) -> None:
        self.model, self.inputs, self.expected = model, example_inputs, expected
        self.on_meta: bool | None = None  # None until the unpruned model was tried on meta
        self._ref: list | None = None

    def _run(self, on_meta: bool, plan) -> list:
        m = (meta_copy if on_meta else shared_copy)(self.model).eval()
        if plan is not None:
            apply(m, plan)
        with torch.no_grad(), (FastMeta() if on_meta else contextlib.nullcontext()):
            out = call_model(m, to_meta(self.inputs) if on_meta else self.inputs)
        return [t.shape for t in output_tensors(out)]

    @property
    def ref(self) -> list:
        """Output shapes of the unpruned model (NotRunnable when it does not run as a copy at all)."""
        return self._reference()

    def _reference(self) -> list:
        if self.on_meta is None:
            try:
                self._ref, self.on_meta = self._run(True, None), True
            except Exception:  # noqa: BLE001 - not runnable on meta: fall back to real tensors
                self.on_meta = False
        if self._ref is None:
            try:
                self._ref = self._run(False, None)
            except Exception as e:  # noqa: BLE001 - reported as the model's, not a plan's, failure
                raise NotRunnable(f"the unpruned model does not run as a copy ({type(e).__name__}: {e})") from e
        return self._ref

    def __call__(self, plan) -> list:
        if plan is None:
            return self.ref
        if self.on_meta is None and self.expected is not None:
            try:
                shapes = self._run(True, plan)
            except Exception:  # noqa: BLE001 - judged below, once it is known whether meta runs the model
                shapes = None
            if shapes is not None and shapes == self.expected:
                self.on_meta, self._ref = True, list(self.expected)
                return shapes
        self._reference()  # decides meta or real copies (NotRunnable if the model runs neither way)
        return self._run(bool(self.on_meta), plan)


def shape_runner(model: nn.Module, example_inputs: Any, graph: DependencyGraph | None = None) -> ShapeRunner:
    """A ShapeRunner for `model` on `example_inputs`; given the `graph` traced from this very model on these
    very inputs, it takes the output shapes the trace recorded as the unpruned reference."""
    same = graph is not None and graph.model is model and graph.example_inputs is example_inputs
    return ShapeRunner(model, example_inputs, graph.output_shapes if same else None)


def probe_groups(model: nn.Module, graph: DependencyGraph, example_inputs: Any) -> int:
    """Mark groups whose single-channel removal breaks the forward; returns how many were marked.

    Group testing: remove one channel from every prunable group at once; only when that fails, split the
    set in halves and recurse, so a model with no hidden coupling costs a single forward.
    """
    run = shape_runner(model, example_inputs, graph)
    errors: dict[str, str] = {}

    def try_set(groups) -> str | None:
        kept = {}
        for g in groups:
            n = max(1, g.round_to)
            drop = set(g.candidates[:n])
            kept[g.name] = [c for c in range(g.size) if c not in drop]
        try:
            shapes = run(PruningPlan.from_kept(graph, kept, member_digests=False))
        except NotRunnable:
            raise
        except Exception as e:  # noqa: BLE001 - any failure means these groups cannot be pruned
            return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return None if shapes == run.ref else f"RuntimeError: output shapes change: {run.ref} -> {shapes}"

    def search(groups) -> None:
        err = try_set(groups)
        if err is None:
            return
        if len(groups) == 1:
            errors[groups[0].name] = err
            return
        half = len(groups) // 2
        search(groups[:half])
        search(groups[half:])

    cands = [g for g in graph.prunable_groups() if len(g.candidates) >= max(1, g.round_to) and g.size > g.round_to]
    if not cands:
        return 0
    try:
        search(cands)
    except NotRunnable:  # the model cannot run this way (data-dependent ops on meta): keep the trace verdict
        return 0
    for g in cands:
        if g.name in errors:
            g.prunable = False
            g.reason = f"removing a channel breaks the forward ({errors[g.name]})"
    return len(errors)


@without_gc
def exclude_breaking(model: nn.Module, graph: DependencyGraph, plan, example_inputs: Any) -> dict[str, str]:
    """Find the decisions of `plan` that break the forward only in combination (a width the model asserts on,
    an index table sized from another group) and mark their groups not prunable, with the error as reason.

    Decisions are added in chunks to a set known to run; a chunk that fails is halved until the one decision
    that breaks it is found, so a plan that runs costs one forward. Returns {group name: error}.
    """
    run = shape_runner(model, example_inputs, graph)
    good: dict[str, list[int]] = {}
    errors: dict[str, str] = {}

    def fails(kept: dict[str, list[int]]) -> str | None:
        try:
            shapes = run(PruningPlan.from_kept(graph, kept, member_digests=False))
        except NotRunnable:
            raise
        except Exception as e:  # noqa: BLE001 - any failure means this combination cannot be applied
            return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return None if shapes == run.ref else f"output shapes change: {run.ref} -> {shapes}"

    def add(chunk: list) -> None:
        err = fails({**good, **{d.name: d.kept for d in chunk}})
        if err is None:
            good.update({d.name: d.kept for d in chunk})
        elif len(chunk) == 1:
            errors[chunk[0].name] = err
        else:
            add(chunk[: len(chunk) // 2])
            add(chunk[len(chunk) // 2:])

    try:
        add([d for d in plan.decisions if d.removed])
    except NotRunnable:  # the model cannot run as a structural copy: nothing to check here
        return {}
    for name, err in errors.items():
        g = graph.group(name)
        g.prunable = False
        g.reason = f"pruning it together with the other groups breaks the forward ({err})"
    return errors
