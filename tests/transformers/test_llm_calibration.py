"""The block-by-block calibration pass gives the same Linear input statistics as full forwards."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.transformers.calibration import blocks_chained, find_blocks, full_forward_stats, run_blocks

from llm_tiny import batches, tiny_bert, tiny_llama

pytestmark = pytest.mark.usefixtures("single_thread")


class Stack(nn.Module):
    """A non-HF model: embedding, a ModuleList of residual MLP blocks, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)) for _ in range(3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].tokens == b[k].tokens
        torch.testing.assert_close(a[k].sq_sum, b[k].sq_sum, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(a[k].sum, b[k].sum, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(a[k].xtx, b[k].xtx, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama])
def test_blockwise_equals_full_forward_hf(make):
    model = make()
    data = batches()
    _assert_same(run_blocks(model, data, hessian=True), full_forward_stats(model, data, hessian=True))


class Chained(Stack):
    """The same with the residual inside each block, so block outputs feed the next block directly."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Residual() for _ in range(3))

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, h):
        return h + self.down(torch.relu(self.up(h)))


def test_chained_plain_module_runs_block_by_block():
    model = Chained().eval()
    data = [torch.randn(5, 4, 6) for _ in range(2)]
    assert blocks_chained(model, model.blocks, data[0])
    _assert_same(run_blocks(model, data, hessian=True, mode="blocks"), full_forward_stats(model, data, hessian=True))


def test_unchained_blocks_use_full_forwards():
    model = Stack().eval()
    data = [torch.randn(5, 4, 6) for _ in range(2)]
    assert find_blocks(model)[0] == "blocks"
    assert not blocks_chained(model, model.blocks, data[0])
    with pytest.raises(ValueError, match="mode='full'"):
        run_blocks(model, data, mode="blocks")
    stats = run_blocks(model, data, hessian=True)
    _assert_same(stats, full_forward_stats(model, data, hessian=True))
    assert stats["blocks.1.0"].tokens == 2 * 5 * 4  # block 1's first Linear sees h = x + block0(x)
    x = model.inp(torch.cat(data).reshape(-1, 6))
    h = x + model.blocks[0](x)
    torch.testing.assert_close(stats["blocks.1.0"].col_norm.float(), h.detach().norm(dim=0), rtol=1e-5, atol=1e-6)


def test_model_without_blocks_is_one_block():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    data = [torch.randn(7, 4)]
    assert find_blocks(model) is None
    _assert_same(run_blocks(model, data, hessian=True), full_forward_stats(model, data, hessian=True))


def test_on_block_sees_each_block_once_in_order():
    model = tiny_llama(layers=3)
    seen = []
    run_blocks(model, batches(n=1), on_block=lambda rec: seen.append((rec.index, rec.name, len(rec.stats))))
    assert seen == [(0, "model.layers.0", 7), (1, "model.layers.1", 7), (2, "model.layers.2", 7)]
