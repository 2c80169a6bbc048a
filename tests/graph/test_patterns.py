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
    assert not report.weak, report
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


# ---------------------------------------------------------------- whole attention heads (heads=True)
def test_whole_heads_sdpa_exact_with_attributes_and_save_load(tmp_path):
    from .patterns import SDPANet

    torch.manual_seed(0)
    m = SDPANet().eval()
    x = torch.randn(2, 5, 8)
    g = pk.trace(m, x, heads=True)
    grp = g.group("att.q (+2)")
    assert grp.size == 4  # one channel per head
    assert grp.member("att.q.weight", 0).index == [list(range(8 * h, 8 * h + 8)) for h in range(4)]
    assert grp.member("att.o.weight", 1).index == [list(range(8 * h, 8 * h + 8)) for h in range(4)]
    plan = pk.plan(m, x, ratio=0.5, graph=g)
    p = pk.apply(copy.deepcopy(m), plan)
    assert (p.att.heads, p.att.head_dim, p.att.q.out_features, p.att.o.in_features) == (2, 8, 16, 16)
    rep = pk.verify(m, p, plan, x)
    assert plan.exact and rep.exact and rep.max_rel_diff < 1e-5
    after, fresh = g.after(plan, p), pk.trace(p, x, heads=True)
    assert [(a.name, a.size) for a in after.groups] == [(b.name, b.size) for b in fresh.groups]
    assert [s["factors"] for s in after.splits if s["kind"] == "heads"] == [[2, 8]]
    # the file replays the plan (head count included) on a fresh model
    pk.save(p, tmp_path / "m.safetensors", arch={"factory": "tests.graph.patterns:SDPANet"})
    # a factory the file names is never imported by the loader: the caller passes it
    back = pk.load(tmp_path / "m.safetensors", factory=SDPANet)
    assert back.att.heads == 2 and torch.allclose(back(x), p(x))


def test_whole_heads_keep_the_scale_exact_where_head_dim_pruning_is_not():
    from .patterns import HFStyleNet

    torch.manual_seed(0)
    m = HFStyleNet().eval()
    x = torch.randn(2, 5, 6)
    plan = pk.plan(m, x, ratio=0.34, heads=True)
    p = pk.apply(copy.deepcopy(m), plan)
    att = p.att
    assert (att.num_attention_heads, att.attention_head_size, att.all_head_size) == (2, 8, 16)
    assert plan.exact and pk.verify(m, p, plan, x).exact
    # head_dim pruning changes 1/sqrt(head size): the plan says so instead of claiming exactness
    plan_hd = pk.plan(m, x, ratio=0.34)
    p_hd = pk.apply(copy.deepcopy(m), plan_hd)
    assert p_hd.att.num_attention_heads == 3 and p_hd.att.attention_head_size < 8
    assert not plan_hd.exact and any("attention scores" in r for r in plan_hd.reasons())


def test_whole_heads_multihead_attention():
    from .patterns import TransformerNet

    torch.manual_seed(0)
    m = TransformerNet().eval()
    x = torch.randint(0, 50, (2, 7))
    plan = pk.plan(m, x, ratio=0.5, heads=True)
    p = pk.apply(copy.deepcopy(m), plan)
    for layer in p.enc.layers:
        att = layer.self_attn
        assert (att.num_heads, att.head_dim, att.embed_dim) == (2, 8, 16)
        assert att.in_proj_weight.shape == (48, 16)
    assert p(x).shape == (2, 3)
    assert "attention scale depends on head_dim" not in plan.reasons()  # heads go whole: the scale stays
    again = pk.apply(copy.deepcopy(p), pk.plan(p, x, ratio=0.5, heads=True))
    assert again.enc.layers[0].self_attn.num_heads == 1 and again(x).shape == (2, 3)


def test_whole_heads_torchvision_vit():
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                             mlp_dim=64, num_classes=10).eval()
    torch.nn.init.normal_(m.heads.head.weight)  # torchvision zero-initialises the classifier
    x = torch.randn(2, 3, 32, 32)
    plan = pk.plan(m, x, ratio=0.25, heads=True)
    p = pk.apply(copy.deepcopy(m), plan)
    for layer in p.encoder.layers:
        assert (layer.self_attention.num_heads, layer.self_attention.head_dim) == (3, 8)
    assert p(x).shape == (2, 10) and p.conv_proj.out_channels == 24
    rep = pk.verify(m, p, plan, x)
    assert plan.reasons() == ["layer/rms norm normalises over these channels"] and not rep.exact
