"""k-means weight sharing: exactness, quality, shared-gradient fine-tuning, stage sizes."""
import math

import pytest
import torch
from torch import nn

from prunekit.compress import (
    codebooks, dense_bytes, filler_count, kmeans_1d, plain_state_dict, quantized_bytes, relative_gaps,
    share_weights, sparse_bytes, unshare_weights,
)
from prunekit.unstructured import prune_unstructured


def test_kmeans_k_equal_distinct_is_lossless():
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([-0.7, -0.01, 0.003, 0.2, 0.21, 1.5])[torch.randint(0, 6, (1000,), generator=g)]
    km = kmeans_1d(values, 6)
    assert km.centroids.numel() == 6 and km.inertia == 0.0
    assert torch.equal(km.centroids[km.labels].float(), values)


def test_kmeans_lloyd_reseeds_empty_clusters():
    # linear init puts most centroids where there is no data; Lloyd must still use all k
    values = torch.cat([torch.zeros(50), torch.full((50,), 0.1), torch.full((3,), 10.0), torch.full((50,), 0.05)])
    values = values + torch.linspace(0, 1e-3, values.numel())
    km = kmeans_1d(values, 4)
    assert km.centroids.numel() == 4 and bool((km.centroids.diff() > 0).all())
    assert torch.bincount(km.labels, minlength=4).min() > 0
    small = values[values < 5]
    stuck = ((small - small.mean()) ** 2).sum()     # what the start (two clusters used) would keep
    assert km.inertia < float(stuck) / 3


def test_kmeans_quality_improves_with_k():
    torch.manual_seed(0)
    x = torch.randn(5000)
    errs = [kmeans_1d(x, 2 ** b).inertia / x.numel() for b in (2, 3, 4, 5)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 0.8 * kmeans_1d(x, 32, iters=0).inertia / x.numel()   # Lloyd improves on the linear grid
    assert kmeans_1d(torch.zeros(0), 4).labels.numel() == 0


def _pruned_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    prune_unstructured(model, 0.8, scope="layer")
    return model


def test_share_weights_keeps_zeros_and_uses_k_values():
    model = _pruned_mlp()
    zeros = {k: model.get_submodule(k[0]).weight.detach() == 0 for k in ("0.weight", "2.weight")}
    infos = share_weights(model, {"linear": 3})
    assert {k: (i.clusters, i.nonzero) for k, i in infos.items()} == {"0.weight": (8, 410), "2.weight": (8, 128)}
    for k, z in zeros.items():
        w = model.get_submodule(k[0]).weight.detach()
        assert torch.equal(w == 0, z)
        assert torch.unique(w[~z]).numel() <= 8


def test_centroid_finetuning_sums_gradients_per_cluster():
    model = _pruned_mlp()
    share_weights(model, 2)
    x, y = torch.randn(16, 32), torch.randint(0, 10, (16,))
    weight = model[0].weight          # computed through the parametrization
    weight.retain_grad()
    nn.functional.cross_entropy(model[2](model[1](nn.functional.linear(x, weight, model[0].bias))), y).backward()
    p = codebooks(model)["0.weight"]
    expected = torch.zeros(4).index_add_(0, p.index[p.mask], weight.grad[p.mask])
    torch.testing.assert_close(p.codebook.grad, expected)
    zeros = model[0].weight.detach() == 0
    opt = torch.optim.SGD([q for n, q in model.named_parameters() if "codebook" in n], lr=0.5)
    opt.step()
    w = model[0].weight.detach()
    assert torch.equal(w == 0, zeros) and torch.unique(w[~zeros]).numel() <= 4


def test_unshare_is_bit_identical_and_plain_keys():
    model = _pruned_mlp()
    share_weights(model, 4)
    x = torch.randn(5, 32)
    ref = model(x)
    assert set(plain_state_dict(model)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    unshare_weights(model)
    assert torch.equal(model(x), ref)


def test_stage_sizes_by_hand():
    mask = torch.zeros(100, dtype=torch.bool)
    mask[[0, 3, 40, 99]] = True
    gaps = relative_gaps(mask)
    assert gaps.tolist() == [0, 2, 36, 58]
    assert filler_count(gaps, 5) == 1 + 1 and filler_count(gaps, 3) == 4 + 7
    model = _pruned_mlp()
    assert dense_bytes(model) == 4 * (32 * 64 + 64 + 64 * 10 + 10)
    sparse = sparse_bytes(model, index_bits=8)
    assert sparse == math.ceil(410 * 40 / 8) + math.ceil(128 * 40 / 8) + 4 * 74   # no gap > 255 here
    share_weights(model, 4)
    quant = quantized_bytes(model, index_bits=8)
    assert quant == math.ceil((410 * 12 + 32 * 16) / 8) + math.ceil((128 * 12 + 32 * 16) / 8) + 4 * 74
    with pytest.raises(ValueError, match="bits"):
        share_weights(_pruned_mlp(), 20)
