"""Depth pruning removes the least influential block; FLAP-like width pruning shrinks heads and MLP
neurons through the engine, with bias compensation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.transformers.depth import block_influence, prune_depth
from prunekit.transformers.structured import StructuredConfig, compensate_bias, prune_structured

from llm_tiny import batches, tiny_bert, tiny_llama

pytestmark = pytest.mark.usefixtures("single_thread")


def _quiet_block(model, index: int) -> None:
    """Make Llama block `index` nearly the identity: its residual branches output ~0."""
    layer = model.model.layers[index]
    with torch.no_grad():
        for lin in (layer.self_attn.o_proj, layer.mlp.down_proj):
            lin.weight.mul_(1e-3)
            if lin.bias is not None:
                lin.bias.zero_()


def test_depth_removes_lowest_influence_block_and_updates_config():
    model = tiny_llama(layers=4)
    _quiet_block(model, 2)
    data = batches()
    bi = block_influence(model, data)
    assert len(bi) == 4 and min(range(4), key=bi.__getitem__) == 2 and bi[2] < 1e-3
    kept = [model.model.layers[i] for i in (0, 1, 3)]
    rep = prune_depth(model, data, remove=1)
    assert rep.removed == [2] and rep.blocks_after == 3
    assert model.config.num_hidden_layers == 3 and len(getattr(model.config, "layer_types", None) or [0] * 3) == 3
    assert list(model.model.layers) == kept
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    out = model(input_ids=data[0]["input_ids"], use_cache=True)
    assert out.logits.shape == (4, 12, 64)


def test_depth_rejects_removing_everything():
    with pytest.raises(ValueError, match="may go"):
        prune_depth(tiny_llama(layers=2), batches(n=1), remove=2)
    with pytest.raises(TypeError):
        prune_depth(tiny_llama(layers=2), batches(n=1), removee=1)


@pytest.mark.parametrize("allocation", ["adaptive", "uniform"])
def test_structured_bert_removes_half_the_block_parameters(allocation):
    model = tiny_bert()
    data = batches()
    before = sum(p.numel() for p in model.encoder.parameters())
    rep = prune_structured(model, data, ratio=0.5, allocation=allocation)
    after = sum(p.numel() for p in model.encoder.parameters())
    assert rep.removed_params / rep.prunable_params == pytest.approx(0.5, abs=0.05)
    assert 0.45 < after / before < 0.6
    assert len(rep.groups) == 6  # heads and MLP neurons of 3 blocks
    if allocation == "uniform":
        assert all(g["kept"] == g["size"] // 2 for g in rep.groups.values())
        assert model.config.num_attention_heads == 2 and model.config.intermediate_size == 32
    out = model(**data[0]).last_hidden_state
    assert out.shape == (4, 12, 32) and torch.isfinite(out).all()


def test_structured_llama_mlp_with_compensation_keeps_outputs_close():
    model = tiny_llama()
    data = batches()
    with torch.no_grad():
        ref = model(input_ids=data[0]["input_ids"]).logits
    rep = prune_structured(model, data, StructuredConfig(ratio=0.25, heads=False))
    assert all(g["size"] == 64 for g in rep.groups.values()) and model.model.layers[0].mlp.down_proj.in_features < 64
    with torch.no_grad():
        out = model(input_ids=data[0]["input_ids"]).logits
    assert out.shape == ref.shape and float((out - ref).abs().mean()) < float(ref.abs().mean())


def test_bias_compensation_is_exact_for_constant_inputs():
    """A removed input that is constant over the calibration set contributes W[:, j] * mean_j exactly."""
    from prunekit.transformers.calibration import LinearStats
    from prunekit.transformers.structured import _Unit

    class Member:
        module, index = "down", [[0], [1], [2], [3]]

        def positions(self, chans):
            return sorted(i for c in chans for i in self.index[c])

    class Group:
        size = 4

    model = nn.Module()
    model.down = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    x[:, 1] = 2.5
    st = LinearStats("down", 4)
    st.add(x)
    ref = model.down(x)
    compensate_bias(model, _Unit(Group(), [Member()], torch.ones(4), False), [0, 2, 3], {"down": st})
    x0 = x.clone()
    x0[:, 1] = 0
    torch.testing.assert_close(model.down(x0), ref, rtol=1e-5, atol=1e-5)


def test_structured_config_validates():
    with pytest.raises(ValueError, match="importance"):
        StructuredConfig(importance="l7")
    with pytest.raises(ValueError, match="ratio"):
        StructuredConfig(ratio=1.0)
    with pytest.raises(TypeError):
        StructuredConfig(ratios=0.5)


def test_structured_and_depth_on_a_plain_pytorch_model():
    from llm_tiny import MLPStack

    data = [torch.randn(4, 5, 6) for _ in range(3)]
    model = MLPStack().eval()
    rep = prune_structured(model, data, ratio=0.5, allocation="uniform", heads=False)
    assert [b.up.out_features for b in model.blocks] == [8, 8, 8]
    assert rep.removed_params / rep.prunable_params == pytest.approx(0.5)
    assert model(data[0]).shape == (4, 5, 2)
    deep = MLPStack(blocks=4).eval()
    with torch.no_grad():
        deep.blocks[1].down.weight.mul_(1e-4)
        deep.blocks[1].down.bias.zero_()
    assert prune_depth(deep, data, remove=1).removed == [1] and len(deep.blocks) == 3
