"""onnxruntime's blocked (NCHWc) layout: convolutions whose widths fit the block are blocked, odd pruned widths
are not, and `pk.export` reports it with a hint that names the width to round to."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cli import main
from prunekit.measure.ort_layout import block_size, ort_conv_layout
from prunekit.models import create

pytestmark = pytest.mark.usefixtures("single_thread")


def _net(c1: int, c2: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c2, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10)).eval()


def test_blocked_layout_follows_the_widths(tmp_path):
    x = torch.randn(1, 3, 16, 16)
    b = block_size()
    assert b in (1, 8, 16)
    aligned = pk.export(_net(32, 48), x, tmp_path / "aligned.onnx", latency_batches=())
    odd = pk.export(_net(29, 45), x, tmp_path / "odd.onnx", latency_batches=())
    assert aligned.conv_layout.convs == odd.conv_layout.convs == 3
    if b > 1:  # a CPU with AVX2 or AVX-512: onnxruntime has the blocked kernels
        assert aligned.conv_layout.blocked == 3 and aligned.layout_hint is None
        # 29 and 45 output channels fit no block: those convolutions, and the one reading 45 channels, fall out
        assert odd.conv_layout.blocked < 3 and len(odd.conv_layout.unblocked) == 3 - odd.conv_layout.blocked
        assert f"round_to={b}" in odd.layout_hint and odd.to_dict()["layout_hint"] == odd.layout_hint
    else:
        assert aligned.conv_layout.blocked == odd.conv_layout.blocked == 0 and "no blocked layout" in odd.layout_hint
    assert ort_conv_layout(tmp_path / "aligned.onnx") == aligned.conv_layout
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        ort_conv_layout(tmp_path / "missing.onnx")


def test_export_command_prints_the_layout(tmp_path, capsys):
    torch.manual_seed(0)
    # width 0.3: 19, 38, 77 and 154 channels, no multiple of 8 or 16
    pk.save(create("vgg11", num_classes=10, in_channels=1, width=0.3), tmp_path / "m.safetensors",
            extra={"input_shape": [1, 28, 28]})
    assert main(["export", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "m.onnx"), "--batches", "1",
                 "--runs", "1"]) == 0
    out = capsys.readouterr().out
    layout = ort_conv_layout(tmp_path / "m.onnx")
    assert layout.convs == 8 and f"{layout.blocked} of 8" in out
    if block_size() > 1:
        assert layout.blocked < 8 and f"prunekit export: note: {8 - layout.blocked} of 8 convolutions" in out
