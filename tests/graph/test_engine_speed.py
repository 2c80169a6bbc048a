"""The engine's speed-ups keep every answer: fast meta shape functions agree with torch's meta kernels
(shapes, strides, dtypes, and failing where they fail), the shape checks take the trace's output shapes as
their reference only when the trace fits, and the collector pause restores the collector's state."""
from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import prunekit as pk
from prunekit import probing
from prunekit.utils.gcpause import gc_paused, without_gc
from prunekit.utils.metaops import FAST, FastMeta


class _Compare(TorchDispatchMode):
    """Runs every FAST op both ways and records (op, fast result, torch's result)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ref = func(*args, **kwargs)
        if func in FAST:
            with FastMeta():
                fast = func(*args, **kwargs)
            self.seen.append((func, fast, ref))
        return ref


def _layout(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [(tuple(t.shape), t.stride(), t.dtype) for t in outs]


class _Block(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.ln = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4)

    def forward(self, x):
        y = self.bn(self.conv(x))  # native_batch_norm
        t = y.flatten(2).transpose(1, 2)  # (B, HW, C), not contiguous: layer norm still answers
        t = nn.functional.gelu(self.ln(t))
        s = torch.softmax(t @ t.transpose(1, 2), dim=-1)  # _softmax / _safe_softmax
        return self.fc((s @ t).mean(1))  # addmm


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_meta_matches_torch_meta_kernels(channels_last):
    model = probing.meta_copy(_Block().eval())
    x = torch.empty(2, 3, 6, 6, device="meta")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mode = _Compare()
    with torch.no_grad(), mode:
        model(x)
    ops = {str(f) for f, _, _ in mode.seen}
    assert {"aten.native_batch_norm.default", "aten.native_layer_norm.default", "aten.addmm.default",
            "aten.gelu.default"} <= ops
    for func, fast, ref in mode.seen:
        assert _layout(fast) == _layout(ref), func


@pytest.mark.parametrize("bad", ["bn", "ln", "addmm_k", "addmm_bias"])
def test_fast_meta_fails_where_torch_fails(bad):
    m = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    calls = {
        "bn": lambda: torch.ops.aten.native_batch_norm.default(m(2, 3, 4, 4), m(4), m(3), m(3), m(3), False, .1, 1e-5),
        "ln": lambda: torch.ops.aten.native_layer_norm.default(m(2, 5, 8), [8], m(7), m(8), 1e-5),
        "addmm_k": lambda: torch.ops.aten.addmm.default(m(8), m(10, 5), m(4, 8)),
        "addmm_bias": lambda: torch.ops.aten.addmm.default(m(7), m(10, 5), m(5, 8)),
    }
    with pytest.raises(RuntimeError):
        calls[bad]()
    with FastMeta(), pytest.raises(RuntimeError):
        calls[bad]()


def test_fast_meta_leaves_other_dtypes_to_torch():
    x = torch.empty(2, 5, 8, device="meta", dtype=torch.bfloat16)
    w = torch.empty(8, device="meta", dtype=torch.bfloat16)
    with FastMeta():
        out = torch.ops.aten.native_layer_norm.default(x, [8], w, w, 1e-5)
    assert _layout(out) == _layout(torch.ops.aten.native_layer_norm.default(x, [8], w, w, 1e-5))


def test_shape_runner_uses_the_trace_only_for_its_own_inputs():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(2, 6)
    graph = pk.trace(model, x)
    assert graph.output_shapes == [torch.Size([2, 3])]
    assert probing.shape_runner(model, x, graph).expected == [torch.Size([2, 3])]
    assert probing.shape_runner(model, torch.randn(5, 6), graph).expected is None  # other inputs
    runner = probing.shape_runner(model, torch.randn(5, 6), graph)
    assert runner(None) == [torch.Size([5, 3])]
    plan = pk.plan(model, x, ratio=0.5, graph=graph)
    assert runner(plan) == [torch.Size([5, 3])]
    assert graph.after(plan).output_shapes is None  # a pruned graph's outputs are not known without a run


def test_shape_runner_reports_a_model_that_runs_no_way():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("always")

    runner = probing.ShapeRunner(Broken(), torch.zeros(1), expected=[torch.Size([1])])
    with pytest.raises(probing.NotRunnable, match="always"):
        runner(pk.PruningPlan())


def test_gc_pause_nests_and_restores():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()

    @without_gc
    def boom():
        assert not gc.isenabled()
        raise KeyError("x")

    with pytest.raises(KeyError):
        boom()
    assert gc.isenabled()


def test_plan_runs_one_shape_forward_per_check(monkeypatch):
    """The probe and the final check each run their plan once, with the trace's output shapes as reference:
    no unpruned forward on a model whose plan passes (before: two per check)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 4)).eval()
    x = torch.randn(1, 3, 8, 8)
    runs = []
    original = probing.ShapeRunner._run

    def counted(self, on_meta, plan):
        runs.append((on_meta, plan is None))
        return original(self, on_meta, plan)

    monkeypatch.setattr(probing.ShapeRunner, "_run", counted)
    plan = pk.plan(model, x, ratio=0.5)
    assert not plan.is_empty()
    assert runs == [(True, False), (True, False)]  # probe, final check: meta copies, plans applied
    assert gc.isenabled()
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert gc.isenabled() and pk.verify(model, pruned, plan, x).exact
