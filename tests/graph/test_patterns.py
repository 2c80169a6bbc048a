import copy

import pytest
import torch

import prunekit as pk

from .patterns import APPROXIMATE, PATTERNS


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_prunes_and_verifies(name):
    torch.manual_seed(0)
    cls, make = PATTERNS[name]
    model = cls().eval()
    x = make()
    with torch.no_grad():
        ref = model(x)
    graph = pk.trace(model, x)
    assert graph.prunable_groups(), graph.summary()
    plan = pk.plan(model, x, ratio=0.3, graph=graph)
    assert not plan.is_empty()
    pruned = pk.apply(copy.deepcopy(model), plan)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == ref.shape
    assert _n(pruned) < _n(model)
    report = pk.verify(model, pruned, plan, x)
    if name in APPROXIMATE:
        assert not plan.exact and plan.reasons()
    else:
        assert plan.exact
        assert report.exact, report
        assert report.max_rel_diff < 1e-5
    # the pruned model can itself be traced and pruned again
    plan2 = pk.plan(pruned, x, ratio=0.2)
    again = pk.apply(copy.deepcopy(pruned), plan2)
    assert again(x).shape == ref.shape
    assert _n(again) <= _n(pruned)


def test_dense_concat_members_have_offsets():
    from .patterns import DenseNetLike

    m = DenseNetLike(c=8, growth=6, n=3).eval()
    g = pk.trace(m, torch.randn(1, 3, 8, 8))
    stem = g.group("stem")
    head_in = stem.member("head.weight", 1)
    # stem channels are the first 8 inputs of the classifier, one position each
    assert [ix for ix in head_in.index] == [[i] for i in range(8)]
    second = g.group("layers.1.2")
    assert second.member("head.weight", 1).index == [[14 + i] for i in range(6)]


def test_flatten_maps_channel_to_spatial_block():
    from .patterns import FlattenNet

    m = FlattenNet().eval()
    g = pk.trace(m, torch.randn(1, 1, 8, 8))
    mem = g.group("c").member("fc.weight", 1)
    assert mem.index[3] == list(range(3 * 36, 4 * 36))


def test_channel_shuffle_and_groups_constraints():
    from .patterns import ShuffleNetLike

    m = ShuffleNetLike().eval()
    x = torch.randn(1, 3, 8, 8)
    g = pk.trace(m, x)
    plan = pk.plan(m, x, ratio=0.34, graph=g)
    p = pk.apply(copy.deepcopy(m), plan)
    assert p.g1.out_channels % p.g1.groups == 0 and p.g1.in_channels % p.g1.groups == 0
    assert p.dw.groups == p.dw.in_channels == p.dw.out_channels
    assert pk.verify(m, p, plan, x).exact


def test_mha_attributes_patched():
    from .patterns import TransformerNet

    m = TransformerNet().eval()
    x = torch.randint(0, 50, (2, 7))
    plan = pk.plan(m, x, ratio=0.5)
    p = pk.apply(copy.deepcopy(m), plan)
    att = p.enc.layers[0].self_attn
    assert att.embed_dim == att.in_proj_weight.shape[1] == p.emb.embedding_dim
    assert att.head_dim * att.num_heads == att.embed_dim and att.num_heads == 4
    assert p(x).shape == (2, 3)


def test_sdpa_head_dim_patched_and_exact_with_fixed_scale():
    from .patterns import SDPANet

    m = SDPANet().eval()
    x = torch.randn(2, 5, 8)
    plan = pk.plan(m, x, ratio=0.5)
    p = pk.apply(copy.deepcopy(m), plan)
    assert p.att.head_dim < 8 and p.att.q.out_features == 4 * p.att.head_dim
    assert pk.verify(m, p, plan, x).exact
