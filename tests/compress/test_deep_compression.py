"""The Deep Compression method on tiny data (the benchmark suite: tests/bench/test_speed_compression.py)."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.compress import read_compressed
from prunekit.methods.deep_compression import deep_compression



def _loader(n: int = 256, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].argmax(1))                      # learnable: the largest of the first 4 features
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)


def test_pipeline_stages_sizes_and_exact_file(tmp_path):
    from prunekit.train import TrainConfig, Trainer
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    train, test = _loader(), _loader(128, 1)
    Trainer(model, train, None, TrainConfig(epochs=5, lr=0.1, progress=False, verbose=False), device="cpu").fit()
    cfg = TrainConfig(progress=False, verbose=False)
    res = deep_compression(model, train, None, test, sparsity={"0": 0.8, "2": 0.5}, retrain_epochs=2,
                           retrain_lr=0.02, bits={"linear": 3}, finetune_epochs=1, finetune_lr=0.005,
                           train_config=cfg, path=tmp_path / "m.pkz", device="cpu", schedule="agp")
    assert [s.stage for s in res.stages] == ["dense", "pruned", "quantized", "huffman"]
    sizes = [s.bytes for s in res.stages]
    assert sizes[0] == 4 * (16 * 64 + 64 + 64 * 4 + 4)
    assert sizes[0] > sizes[1] > sizes[2]
    assert res.exact and res.path == str(tmp_path / "m.pkz")
    assert res.stage("huffman").accuracy == res.stage("quantized").accuracy
    assert res.stage("dense").accuracy > 0.5                # learnt something (chance: 0.25)
    kept = {layer.key: layer.density for layer in res.layers}
    assert kept == pytest.approx({"0.weight": 0.2, "2.weight": 0.5}, abs=1e-3)
    assert all(layer.clusters <= 8 for layer in res.layers)
    cf = read_compressed(tmp_path / "m.pkz")
    assert [s["stage"] for s in cf.meta["stages"]] == ["dense", "pruned", "quantized"]
    assert len(res.notes["agp_history"]) >= 2
