"""The labelled forward runs on a meta copy of the model where that gives the real run's answer, and on
the model itself where it cannot (lazy modules, data-dependent steps, labels that would follow the values
of a meta index or mask): the graph is the same either way, and the copy never touches the model."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

import prunekit as pk
from prunekit.graph import trace as tracer


def _summary(graph) -> str:
    groups = [(g.name, g.size, g.prunable, g.reason, sorted(g.notes), g.candidates, g.round_to,
               [(m.key, m.dim, m.role, m.index) for m in g.members], list(g.roots)) for g in graph.groups]
    return json.dumps({"groups": groups, "splits": graph.splits, "shapes": graph.shapes,
                       "macs": graph.macs_by_key, "other": graph.macs_other,
                       "out": [list(s) for s in graph.output_shapes]}, default=str)


@pytest.fixture(autouse=True)
def _meta_for_small_models(monkeypatch):
    monkeypatch.setattr(tracer, "META_TRACE_MIN_ELEMENTS", 0)  # these test models are all small


def _both(model, x, monkeypatch, **kw):
    """(graph traced as pk.trace does, graph traced on the model itself)."""
    fast = pk.trace(model, x, **kw)
    with monkeypatch.context() as m:
        m.setattr(tracer, "_labelled_forward_on_meta", lambda *a, **k: (None, None))
        real = pk.trace(model, x, **kw)
    assert real.traced_on == "model"
    return fast, real


def _vit():
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=48, num_classes=10).eval()


class _Swinish(nn.Module):
    """Attention with a relative-position bias gathered through an integer index buffer."""

    def __init__(self, c: int = 16, n: int = 9, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.table = nn.Parameter(torch.randn(2 * n - 1, heads))
        idx = torch.arange(n)
        self.register_buffer("index", (idx[:, None] - idx[None, :] + n - 1).reshape(-1))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.table[self.index].reshape(n, n, self.heads).permute(2, 0, 1)
        attn = (q @ k.transpose(-2, -1) + bias).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _TopK(nn.Module):
    """Keeps the channels the data picks: an index computed from activations (meta has no values)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(4, 5, 1)

    def forward(self, x):
        y = self.a(x)
        keep = y.mean((0, 2, 3)).argsort()[:4]
        return self.b(y[:, keep])


@pytest.mark.parametrize("build, shape", [
    (lambda: torchvision.models.resnet18(num_classes=10).eval(), (1, 3, 32, 32)),
    (_vit, (1, 3, 32, 32)),
    (lambda: _Swinish().eval(), (1, 9, 16)),
    (lambda: torchvision.models.mobilenet_v3_small(num_classes=10).eval(), (1, 3, 32, 32)),
])
def test_meta_trace_gives_the_real_graph(build, shape, monkeypatch):
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast, real = _both(model, torch.randn(*shape), monkeypatch)
    assert fast.traced_on == "meta"
    assert _summary(fast) == _summary(real)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_attention_takes_the_cpu_kernel_on_meta(monkeypatch):
    """On meta torch would decompose scaled_dot_product_attention; the trace takes the fused CPU kernel a
    real run takes, so the score matmuls are not attributed to the position embedding."""
    seen = []
    orig = tracer._attention_as_on_cpu
    monkeypatch.setattr(tracer, "_attention_as_on_cpu", lambda *a, **k: seen.append(1) or orig(*a, **k))
    model = _vit()
    fast, real = _both(model, torch.randn(1, 3, 32, 32), monkeypatch)
    assert fast.traced_on == "meta" and len(seen) == 2  # one attention call per layer, both taken
    assert "encoder.pos_embedding" not in fast.macs_by_key
    assert torch.nn.functional.scaled_dot_product_attention is tracer._SDPA  # restored after the trace


def test_values_an_index_needs_send_the_trace_to_the_model(monkeypatch):
    model = _TopK().eval()
    fast, real = _both(model, torch.randn(2, 3, 4, 4), monkeypatch)
    assert fast.traced_on == "model"
    assert _summary(fast) == _summary(real)


def test_reads_meta_values_names_integer_and_bool_tensors_only():
    m = torch.empty(4, device="meta", dtype=torch.long)
    f = torch.empty(4, device="meta")
    aten = torch.ops.aten
    assert tracer._reads_meta_values(aten.index_select.default, (f, 0, m), {})
    assert tracer._reads_meta_values(aten.masked_fill.Scalar, (f, m.bool(), 0.0), {})
    assert not tracer._reads_meta_values(aten.add.Tensor, (f, f), {})
    assert not tracer._reads_meta_values(aten.embedding.default, (f.reshape(2, 2), m), {})
    assert not tracer._reads_meta_values(aten.index_select.default, (f, 0, torch.tensor([1, 2])), {})


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 12, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def test_recurrent_nets_trace_alike(monkeypatch):
    model = _Recurrent().eval()
    fast, real = _both(model, torch.randn(2, 5, 6), monkeypatch)
    assert _summary(fast) == _summary(real)
    assert fast.prunable_groups() and fast.traced_on in ("meta", "model")


def test_small_models_are_traced_on_the_model(monkeypatch):
    monkeypatch.setattr(tracer, "META_TRACE_MIN_ELEMENTS", 5_000_000)
    small = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    assert pk.trace(small, torch.randn(1, 3, 8, 8)).traced_on == "model"
    big = nn.Sequential(nn.Linear(3000, 2000), nn.ReLU(), nn.Linear(2000, 10)).eval()  # 6M elements
    assert pk.trace(big, torch.randn(1, 3000)).traced_on == "meta"


def test_weight_standardisation_is_seen_on_meta(monkeypatch):
    """A weight normalised over its input channels at forward time is state-derived on meta too (meta
    tensors all have data address 0: views are matched by their storage)."""

    class StdConv(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
            return nn.functional.conv2d(x, w, self.bias, padding=1)

    model = nn.Sequential(StdConv(3, 8, 3), nn.ReLU(), StdConv(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    fast, real = _both(model, torch.randn(1, 3, 6, 6), monkeypatch)
    assert fast.traced_on == "meta"
    assert _summary(fast) == _summary(real)
    notes = {n for g in fast.groups for n in g.notes}
    assert notes == {"mean over channels", "std over channels"}  # the input channels of the standardised weights


def test_models_off_the_cpu_are_traced_on_the_model():
    model = torchvision.models.resnet18(num_classes=10).eval().to("meta")  # any device but the CPU
    graph = pk.trace(model, torch.randn(1, 3, 32, 32, device="meta"), probe=False)
    assert graph.traced_on == "model"
    assert len(graph.prunable_groups()) == 12


def test_a_meta_model_indexed_by_meta_values_is_refused():
    """On the meta device an index has no values: following it would give arbitrary couplings."""
    model = _Swinish().eval().to("meta")
    with pytest.raises(pk.UnsupportedOpError, match="indices or a mask on the meta device"):
        pk.trace(model, torch.randn(1, 9, 16, device="meta"), probe=False)
