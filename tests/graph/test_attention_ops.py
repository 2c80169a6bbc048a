"""The ATen ops torch 2.14 emits for F.scaled_dot_product_attention on CPU, every code path: the fused kernel
(plain, boolean and float masks, causal, explicit scale) and the math path it falls back to (dropout_p > 0
even in eval, 2-D inputs: bmm/mm, _safe_softmax, bernoulli_). Each traces; whole heads prune exactly."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk


class Attention(nn.Module):
    def __init__(self, dim=16, heads=4, **sdpa) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.sdpa = heads, dim // heads, sdpa
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        kw = dict(self.sdpa)
        if kw.pop("bool_mask", False):
            kw["attn_mask"] = torch.ones(n, n, dtype=torch.bool).tril()
        if kw.pop("float_mask", False):
            kw["attn_mask"] = torch.linspace(-1, 1, n * n).reshape(n, n)
        y = F.scaled_dot_product_attention(q, k, v, **kw)
        return self.proj(y.transpose(1, 2).reshape(b, n, -1))


CASES = {"plain": {}, "bool_mask": {"bool_mask": True}, "float_mask": {"float_mask": True},
         "causal": {"is_causal": True}, "scale": {"scale": 0.3}}


@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_paths_prune_whole_heads_exactly(case):
    torch.manual_seed(0)
    model, x = Attention(**CASES[case]).eval(), torch.randn(2, 5, 16)
    plan = pk.plan(model, x, ratio=0.25, heads=True)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert pruned.num_heads == 3 and pruned.qkv.out_features == 36
    report = pk.verify(model, pruned, plan, x)
    assert plan.exact and report.exact and report.max_rel_diff < 1e-5, report


def test_sdpa_head_dim_pruning_is_approximate_unless_the_scale_is_given():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    plan = pk.plan(Attention().eval(), x, ratio=0.25)
    assert not plan.exact and "attention scale depends on head_dim" in plan.reasons()
    model = Attention(scale=0.5).eval()
    plan = pk.plan(model, x, ratio=0.25)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert plan.exact and pruned.head_dim == 3 and pk.verify(model, pruned, plan, x).exact


def test_sdpa_math_path_ops_trace():
    # dropout_p > 0 takes the math path even in eval (bmm, _safe_softmax, bernoulli_): the output is random, so
    # only the trace and its verdict are checked: the scores product makes head_dim pruning approximate
    graph = pk.trace(Attention(dropout_p=0.2).eval(), torch.randn(2, 5, 16))
    qkv = graph.group("qkv")
    assert qkv.prunable and qkv.size == 4 and qkv.notes
    graph = pk.trace(_TwoD(), torch.randn(5, 8))  # 2-D query: mm + _safe_softmax, q and k contracted together
    qk = graph.group("q (+1)")
    assert qk.size == 8 and qk.notes and {m.module for m in qk.producers()} == {"q", "k"}


class _TwoD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))

    def forward(self, x):
        return self.o(F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x)))


class _TableLookup(nn.Module):
    """Two position tables (x and y) read by a one-hot matmul batched over the table dim, then summed: the
    table dim meets a one-hot of data of the same size, so it must not shrink (cut to one table it would
    broadcast and read the x table for both coordinates without any error)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(2, 6, 8))
        self.proj = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.stack([torch.arange(6) % 3, torch.arange(6) // 2])  # (2, 6) coordinates, not parameters
        one_hot = F.one_hot(pos, num_classes=6).to(x)                   # (2, 6, 6)
        emb = (one_hot @ self.table).sum(dim=0)                         # (6, 8)
        return self.proj(x + emb)


def test_batch_dim_against_unlabelled_data_is_pinned():
    torch.manual_seed(0)
    model, x = _TableLookup().eval(), torch.randn(6, 8)
    graph = pk.trace(model, x)
    tables = [g for g in graph.groups if any(m.key == "table" and m.dim == 0 for m in g.members)]
    assert len(tables) == 1 and tables[0].size == 2
    assert not tables[0].prunable and "cannot shrink" in tables[0].reason


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(10, 64)
        layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(64, 3)

    def forward(self, x, mask):
        return self.head(self.enc(self.proj(x), src_key_padding_mask=mask).mean(1))


def test_transformer_encoder_with_a_padding_mask_in_eval_mode_prunes_whole_heads():
    """In eval mode with a padding mask nn.TransformerEncoder calls a nested-tensor check op and fused kernels
    (its fast path), which raised UnsupportedOpError; the trace runs the module's plain path instead. The
    pruned encoder runs that fast path too, also at an odd head count (where torch's layers refuse it)."""
    torch.manual_seed(0)
    model = _Encoder().eval()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True  # the second sequence is padded
    x = (torch.randn(2, 6, 10), mask)
    assert torch.backends.mha.get_fastpath_enabled()
    for ratio, heads in ((0.5, 2), (0.25, 3)):
        plan = pk.plan(model, x, ratio=ratio, heads=True)
        assert torch.backends.mha.get_fastpath_enabled()  # restored after the trace
        # nn.MultiheadAttention ties its head space to the residual width, which LayerNorm normalises
        assert plan.reasons() == ["layer/rms norm normalises over these channels"]
        pruned = pk.apply(copy.deepcopy(model), plan)
        assert [m.self_attn.num_heads for m in pruned.enc.layers] == [heads, heads]
        assert pruned.enc.layers[0].self_attn.head_dim == 16 and pruned.proj.out_features == 16 * heads
        assert pruned.enc.use_nested_tensor == (heads % 2 == 0)
        with torch.no_grad():
            fast = pruned(*x)
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                plain = pruned(*x)
            finally:
                torch.backends.mha.set_fastpath_enabled(True)
        # the unpadded sequence gets the same logits either way (the fast path zeroes padded positions)
        assert fast.shape == (2, 3) and torch.allclose(fast[0], plain[0], atol=1e-5)
