"""Hugging Face transformers models prune, run, generate, verify and reload (tiny configs, random init, no downloads).

Every model of `prunekit.transformers.hf.tiny_zoo()` is pruned 30% uniform, with head_dim (default) and with
whole heads as the unit; the pruned model is checked against the original with the removed slices zeroed
(computed here, independently of `pk.verify`), generates, and reloads: through `save_pretrained` +
`from_pretrained` when `config_status` says its config describes it, else through `pk.save` / `pk.load`.
"""
import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.graph.trace import _tensors
from prunekit.transformers import hf

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = [c.name for c in hf.tiny_zoo()]
# (model, heads) whose pruned config rebuilds them exactly; the others differ for a reason the config cannot
# express (hidden not a multiple of the heads, a head_dim other than hidden / heads, a changed attention scale,
# per-stage conv widths)
RELOADABLE = {("qwen2", False), ("qwen2", True), ("mistral", False), ("mistral", True), ("mixtral", False),
              ("mixtral", True), ("t5", False), ("t5", True), ("vit", True)}


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@torch.no_grad()
def _outputs(model: nn.Module, inputs: dict) -> list[torch.Tensor]:
    return [t.float() for t in _tensors(model(**inputs)) if t.is_floating_point()]


def _zeroed(model: nn.Module, plan) -> nn.Module:
    z = copy.deepcopy(model)
    sd = z.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, dim, idx in plan.removals():
            sd[key].index_fill_(dim, torch.tensor(idx), 0.0)
    return z


def _rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert [t.shape for t in a] == [t.shape for t in b]
    scale = max(float(t.abs().max()) for t in a) or 1.0
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) / scale


def _generate(model: nn.Module, inputs: dict) -> torch.Tensor:
    kw = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
    return model.generate(**kw, max_new_tokens=3, min_new_tokens=3, do_sample=False)


def _reload(pruned: nn.Module, tmp_path, reloadable: bool) -> nn.Module:
    if reloadable:
        pruned.save_pretrained(tmp_path / "hf")
        return type(pruned).from_pretrained(tmp_path / "hf").eval()
    path = pk.save(pruned, tmp_path / "model.safetensors")
    return pk.load(path).eval()


@pytest.mark.parametrize("heads", [False, True], ids=["head_dim", "heads"])
@pytest.mark.parametrize("name", NAMES)
def test_hf_model(name, heads, tmp_path):
    status = _check(hf.zoo_case(name), heads, tmp_path)
    assert status.reloadable == ((name, heads) in RELOADABLE), str(status)


@pytest.mark.parametrize("case", hf.extended_zoo(), ids=lambda c: c.name)
def test_hf_more_families(case, tmp_path):
    _check(case, False, tmp_path, max_kept=0.9)  # CodeGen's fused, interleaved qkv keeps its residual width


def _check(case, heads: bool, tmp_path, max_kept: float = 0.8) -> "hf.ConfigStatus":
    """Prune 30%, compare with the zeroed original, generate, reload; returns the config status."""
    name = case.name
    model, x = case.build(), case.inputs()
    ref = _outputs(model, x)
    plan = pk.plan(model, x, ratio=0.3, heads=heads)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert _params(pruned) < max_kept * _params(model), name
    out = _outputs(pruned, x)
    assert [t.shape for t in out] == [t.shape for t in ref]
    # independent check: the original with every removed slice zeroed computes what the pruned model computes
    rel = _rel_diff(_outputs(_zeroed(model, plan), x), out)
    if plan.exact:
        assert rel < 1e-4, f"{name}: plan claims exact, zeroing check differs by {rel:.3g}"
    else:
        assert plan.reasons()
    report = pk.verify(model, pruned, plan, x)
    assert report.exact == (report.max_rel_diff <= 1e-4) and (report.exact or not plan.exact)
    tokens = _generate(pruned, x) if case.generates else None
    status = hf.config_status(pruned)
    again = _reload(pruned, tmp_path, status.reloadable)
    assert _rel_diff(out, _outputs(again, x)) < 1e-6
    if tokens is not None:
        # the prompt, or for encoder-decoders the decoder start token (Whisper's generate strips it)
        start = 0 if name == "whisper" else 1 if "decoder_input_ids" in x else x["input_ids"].shape[-1]
        assert tokens.shape == (1, start + 3)
        assert torch.equal(_generate(again, x), tokens)
    return status


def test_gpt2_conv1d_prunes_both_roles():
    """GPT-2's Conv1D keeps its weight as (in, out): both dims are pruned and nf / nx follow."""
    case = hf.zoo_case("gpt2")
    model, x = case.build(), case.inputs()
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3))
    from transformers.pytorch_utils import Conv1D

    convs = [m for m in pruned.modules() if isinstance(m, Conv1D)]
    assert len(convs) == 8
    for m in convs:
        assert (m.nx, m.nf) == tuple(m.weight.shape) and m.bias.shape == (m.nf,)
    fc = pruned.transformer.h[0].mlp.c_fc
    assert fc.nx == 45 and fc.nf == 179  # 64 -> 45 residual, 256 -> 179 hidden
    attn = pruned.transformer.h[0].attn
    assert (attn.num_heads, attn.head_dim, attn.split_size) == (4, 11, 44)


def test_llama_gqa_whole_kv_groups():
    """heads=True: a kv head goes with the q heads it serves (q heads 2g, 2g+1 for kv head g); the ratio stays 2."""
    case = hf.zoo_case("llama")
    model, x = case.build(), case.inputs()
    plan = pk.plan(model, x, ratio=0.3, heads=True)
    removed = {(k, d): idx for k, d, idx in plan.removals()}
    pruned = pk.apply(copy.deepcopy(model), plan)
    for i, layer in enumerate(pruned.model.layers):
        pre = f"model.layers.{i}.self_attn."
        k_rows, q_rows = removed[(pre + "k_proj.weight", 0)], removed[(pre + "q_proj.weight", 0)]
        assert removed[(pre + "v_proj.weight", 0)] == k_rows and removed[(pre + "o_proj.weight", 1)] == q_rows
        g = k_rows[0] // 16
        assert k_rows == list(range(16 * g, 16 * g + 16))  # one whole kv head
        assert q_rows == list(range(32 * g, 32 * g + 32))  # and exactly the two q heads it serves
        a = layer.self_attn
        assert (a.q_proj.out_features // 16, a.k_proj.out_features // 16, a.num_key_value_groups) == (2, 1, 2)
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (2, 1)


def test_t5_relative_bias():
    """The relative position bias is per head: pinned when head_dim is the unit, pruned with its head otherwise."""
    case = hf.zoo_case("t5")
    model, x = case.build(), case.inputs()
    graph = pk.trace(model, x)
    bias = [g for g in graph.groups if g.name.endswith("relative_attention_bias")]
    assert len(bias) == 2 and all(not g.prunable and "position bias" in g.reason for g in bias)
    d_kv = {g.size for g in graph.groups if g.name.endswith("SelfAttention.q (+2)")}
    assert d_kv == {16}
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3, heads=True))
    for stack in (pruned.encoder, pruned.decoder):
        attn = stack.block[0].layer[0].SelfAttention
        assert attn.relative_attention_bias.weight.shape == (8, attn.n_heads) and attn.n_heads == 3
        assert attn.inner_dim == 3 * attn.key_value_proj_dim == attn.q.out_features
    assert pruned.config.num_heads == 3


def test_llama_round_to_heads_reloads_with_save_pretrained(tmp_path):
    """With widths a multiple of the head count, Llama's config validates and save_pretrained reloads it."""
    case = hf.zoo_case("llama")
    model, x = case.build(), case.inputs()
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3, round_to=4))
    status = hf.config_status(pruned)
    assert status.reloadable, str(status)
    assert pruned.config.hidden_size % 4 == 0 and pruned.config.hidden_size < 64
    again = _reload(pruned, tmp_path, True)
    assert _rel_diff(_outputs(pruned, x), _outputs(again, x)) < 1e-6
    assert torch.equal(_generate(again, x), _generate(pruned, x))


def test_describe_and_build_round_trip():
    case = hf.zoo_case("bert")
    model, x = case.build(), case.inputs()
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3))
    desc = hf.describe(pruned)
    assert desc["class"] == "BertForSequenceClassification" and desc["config"]["hidden_size"] == 64
    rebuilt = hf.build(desc)
    assert _params(rebuilt) == _params(model)
    with pytest.raises(ValueError, match="not a model class exported by transformers"):
        hf.build({"class": "os", "config": desc["config"]})
    with pytest.raises(ValueError, match="remote code"):
        hf.build({"class": "BertModel", "config": {**desc["config"], "auto_map": {"AutoModel": "x.y"}}})


def _channels_first_norms():
    import timm.layers
    from transformers.models.convnext.modeling_convnext import ConvNextLayerNorm
    from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2LayerNorm

    return {"hf_convnext": lambda c: ConvNextLayerNorm(c, data_format="channels_first"),
            "hf_convnextv2": lambda c: ConvNextV2LayerNorm(c, data_format="channels_first"),
            "timm_layernorm2d": lambda c: timm.layers.LayerNorm2d(c)}


@pytest.mark.parametrize("kind", ["hf_convnext", "hf_convnextv2", "timm_layernorm2d"])
def test_channels_first_layer_norm(kind):
    """LayerNorms over dim 1 of an NCHW tensor (they permute, normalise the last dim, permute back)."""
    torch.manual_seed(0)
    norm = _channels_first_norms()[kind]
    model = nn.Sequential(nn.Conv2d(3, 16, 3), norm(16), nn.Conv2d(16, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    x = torch.randn(1, 3, 12, 12)
    plan = pk.plan(model, x, ratio=0.3)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert pruned[0].out_channels == 11 and tuple(pruned[1].normalized_shape) == (11,) == tuple(pruned[1].weight.shape)
    with torch.no_grad():
        assert pruned(x).shape == (1, 4)
    assert not plan.exact and any("norm" in r for r in plan.reasons())


def test_mixtral_experts():
    """Mixture of experts: the router's outputs index experts (pinned); every expert keeps the same channels;
    the grouped_mm kernel wants 16-byte rows, so expert widths stay multiples of 4 float32 elements."""
    case = hf.zoo_case("mixtral")
    model, x = case.build(), case.inputs()
    graph = pk.trace(model, x)
    router = graph.group("model.layers.0.mlp.gate")
    assert not router.prunable and "topk.default depends on channel order" in router.reason
    experts = graph.group("model.layers.0.mlp.experts")
    assert experts.prunable and experts.size == 128 and experts.round_to == 4
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3, graph=graph))
    e = pruned.model.layers[0].mlp.experts
    assert e.gate_up_proj.shape == (4, 2 * 88, 44) and e.down_proj.shape == (4, 44, 88)
    assert (e.intermediate_dim, e.hidden_dim) == (88, 44) and pruned.config.intermediate_size == 88


def test_parameterless_layer_norm_follows_the_hidden_size():
    """OLMo's LayerNorm has no weight to slice: its normalized_shape follows the pruned residual width."""
    case = next(c for c in hf.extended_zoo() if c.name == "olmo")
    model, x = case.build(), case.inputs()
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.3))
    assert pruned.config.hidden_size == 45
    assert pruned.model.norm.normalized_shape == (45,) and pruned.model.layers[0].input_layernorm.normalized_shape == (45,)


class _GQA(nn.Module):
    """Grouped-query attention written with sdpa's enable_gqa: 4 q heads, 2 kv heads, fixed scale."""

    def __init__(self, dim: int = 32, heads: int = 4, kv_heads: int = 2, head_dim: int = 16):
        super().__init__()
        self.num_heads, self.num_key_value_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(dim, heads * head_dim)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim)
        self.o_proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, n, -1))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.head = _GQA(), nn.Linear(32, 5)

    def forward(self, x):
        return self.head(torch.relu(self.attn(x)))


@pytest.mark.parametrize("heads", [False, True], ids=["head_dim", "heads"])
def test_gqa_sdpa_head_dim_and_kv_groups(heads):
    """head_dim pruning takes the same positions in q, k and v; whole-head pruning takes a kv head with its q heads.
    With a fixed scale both are exact, and the zeroing check agrees."""
    torch.manual_seed(0)
    model, x = _Block().eval(), torch.randn(2, 6, 32)
    plan = pk.plan(model, x, ratio=0.3, heads=heads)
    pruned = pk.apply(copy.deepcopy(model), plan)
    a = pruned.attn
    if heads:
        assert (a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features) == (32, 16, 16)
        assert (a.num_heads, a.num_key_value_heads, a.head_dim) == (2, 1, 16)
    else:
        assert (a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features) == (44, 22, 22)
        assert (a.num_heads, a.num_key_value_heads, a.head_dim) == (4, 2, 11)
        removed = {(k, d): idx for k, d, idx in plan.removals()}
        q_rows, k_rows = removed[("attn.q_proj.weight", 0)], removed[("attn.k_proj.weight", 0)]
        per_head = sorted({r % 16 for r in k_rows})
        assert q_rows == [h * 16 + d for h in range(4) for d in per_head]  # the same head_dim positions everywhere
        assert k_rows == removed[("attn.v_proj.weight", 0)] == [h * 16 + d for h in range(2) for d in per_head]
    assert plan.exact
    assert _rel_diff(_outputs_plain(_zeroed(model, plan), x), _outputs_plain(pruned, x)) < 1e-5


@torch.no_grad()
def _outputs_plain(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [model(x)]


def test_hf_model_inside_a_wrapper():
    """A plain module holding a GPT-2: its Conv1D and attention patches apply, the inner config follows."""
    case = hf.zoo_case("gpt2")
    inner, x = case.build(), case.inputs()

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = inner

        def forward(self, input_ids):
            return self.lm(input_ids=input_ids).logits

    model = Wrapper().eval()
    plan = pk.plan(model, x["input_ids"], ratio=0.3)
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert pruned.lm.transformer.h[0].mlp.c_fc.nf == 179 and pruned.lm.config.n_embd == 45
    with torch.no_grad():
        assert pruned(x["input_ids"]).shape == (1, 8, 96)
