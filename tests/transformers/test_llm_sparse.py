"""Magnitude / Wanda / SparseGPT: exact sparsity, exact N:M, SparseGPT reconstructs a layer better."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.transformers.calibration import LinearStats
from prunekit.transformers.sparse import (MagnitudeConfig, SparseGPTConfig, WandaConfig, prune_sparse,
                                          sparsegpt_weight)

from llm_tiny import batches, tiny_llama

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_unstructured_sparsity_is_exact(method):
    model = tiny_llama()
    rep = prune_sparse(model, batches(), method, sparsity=0.5)
    assert len(rep.layers) == 14  # 7 Linears in each of 2 blocks; lm_head is outside the blocks
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name.startswith("model.layers."):
            assert parametrize.is_parametrized(mod, "weight")
            assert int((mod.weight == 0).sum()) == mod.weight.numel() // 2
            if method == "wanda":  # per output row
                assert ((mod.weight == 0).sum(1) == mod.in_features // 2).all()
    assert rep.sparsity == pytest.approx(0.5)
    assert not parametrize.is_parametrized(model.lm_head, "weight")


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_nm_keeps_exactly_n_of_every_m(method):
    model = tiny_llama()
    prune_sparse(model, batches(), method, nm="2:4")
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name.startswith("model.layers."):
            nz = (mod.weight != 0).reshape(mod.out_features, -1, 4).sum(-1)
            assert (nz == 2).all(), name


def test_configs_validate():
    with pytest.raises(ValueError, match="contradicts"):
        WandaConfig(sparsity=0.3, nm="2:4")
    with pytest.raises(ValueError, match="N:M"):
        MagnitudeConfig(nm="2-4")
    with pytest.raises(ValueError, match="multiple of M"):
        SparseGPTConfig(nm="2:4", block_size=6)
    with pytest.raises(TypeError):
        WandaConfig(sparsty=0.5)
    with pytest.raises(TypeError):
        prune_sparse(tiny_llama(), batches(), "wanda", bogus=1)
    assert SparseGPTConfig(nm="1:4").sparsity == 0.75


def test_sparsegpt_reconstructs_layer_better_than_magnitude_and_wanda():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(48, 48, generator=g)
    x = torch.randn(2048, 48, generator=g) @ mix * torch.linspace(0.1, 3.0, 48)  # correlated, uneven scales
    lin = nn.Linear(48, 24)
    w = lin.weight.detach()
    st = LinearStats("lin", 48, hessian=True)
    st.add(x)
    errors = {}
    new_w, keep = sparsegpt_weight(w, st.hessian_matrix(), SparseGPTConfig(sparsity=0.5))
    assert int((~keep).sum()) == w.numel() // 2 and bool((new_w[~keep] == 0).all())
    errors["sparsegpt"] = float((x @ (w - new_w).T).square().mean())
    for method in ("magnitude", "wanda"):
        model = nn.Sequential(copy.deepcopy(lin))
        prune_sparse(model, [x], method, sparsity=0.5)
        errors[method] = float((x @ (w - model[0].weight.detach()).T).square().mean())
    assert errors["sparsegpt"] < 0.7 * errors["wanda"] and errors["wanda"] < 0.7 * errors["magnitude"], errors


def test_same_inputs_give_identical_weights():
    a, b = tiny_llama(), tiny_llama()
    prune_sparse(a, batches(), "sparsegpt", sparsity=0.5)
    prune_sparse(b, batches(), "sparsegpt", sparsity=0.5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_layers_outside_the_blocks_are_pruned_when_included():
    model = tiny_llama()
    rep = prune_sparse(model, batches(), "wanda", sparsity=0.5, include=("lm_head", "mlp.up_proj"))
    assert sorted(rep.layers) == ["lm_head.weight", "model.layers.0.mlp.up_proj.weight",
                                  "model.layers.1.mlp.up_proj.weight"]
    assert int((model.lm_head.weight == 0).sum()) == model.lm_head.weight.numel() // 2


def test_calibration_methods_run_by_name_and_reject_unknown_keywords():
    from prunekit.transformers.methods import list_calibration_methods, run_calibration_method

    assert list_calibration_methods() == ["depth", "flap", "magnitude", "sparsegpt", "wanda"]
    model, res = run_calibration_method("wanda", tiny_llama(), batches(), calib_batches=2, nm="2:4")
    assert res.method == "wanda" and res.extras["sparsity"] == pytest.approx(0.5) and res.params_kept == 1.0
    model, res = run_calibration_method("flap", tiny_llama(), batches(), calib_batches=2, ratio=0.3)
    assert res.params_kept < 0.95 and not res.plan.is_empty()
    with pytest.raises(TypeError):
        run_calibration_method("depth", tiny_llama(), batches(), removee=1)
    with pytest.raises(ValueError, match="wanda"):
        run_calibration_method("wandaa", tiny_llama(), batches())
