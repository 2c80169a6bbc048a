"""The 224-px section of `prunekit bench speed`: the three models of a row (dense, prunekit with plain and with
hardware widths, Torch-Pruning at no more MACs), and the options it refuses. Small inputs keep it fast; the
timings here only have to exist (speed claims live in benchmarks/results/speed/)."""
from __future__ import annotations

import pytest
import torch
from prunekit.bench import speed224
from prunekit.bench.config import BenchConfig
from prunekit.bench.speed import PRESETS, run

pytestmark = pytest.mark.usefixtures("single_thread")


def test_variants_and_a_timed_row(tmp_path):
    ex = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    models, info = speed224.build("mobilenet_v2", 0.5, 16, ex)
    assert list(models) == ["dense", "prunekit", "prunekit hw", "torch-pruning"]
    macs = info["macs"]
    assert 0.45 < macs["prunekit"] / macs["dense"] <= 0.52
    assert 0.45 < macs["prunekit hw"] / macs["dense"] <= 0.53
    # Torch-Pruning's model keeps no more MACs than prunekit's plain one, and not much fewer
    assert 0.9 * macs["prunekit"] <= macs["torch-pruning"] <= macs["prunekit"]
    assert info["torch-pruning"]["importance"] == "MagnitudeImportance"
    assert info["torch-pruning"]["global_pruning"] is False
    # every convolution the hw model narrowed is a multiple of 16 wide (depthwise ones included)
    cut = [(d, w) for d, w in zip(info["widths"]["dense"], info["widths"]["prunekit hw"]) if w < d]
    assert cut and all(w % 16 == 0 for _, w in cut), cut
    assert any(w % 16 for w in info["widths"]["prunekit"])  # the plain model has odd widths to compare with
    row = speed224.measure_row("mobilenet_v2", "eager", 2, models, ex, BenchConfig(suite="speed", latency_runs=1),
                               tmp_path)
    for k in ("prunekit", "prunekit hw", "torch-pruning"):
        assert row[f"{k} ms"] > 0 and row[f"{k} speedup"] > 0
        assert row[f"{k} mac_ratio"] == pytest.approx(macs["dense"] / macs[k])
        assert row[f"{k} efficiency"] == pytest.approx(row[f"{k} speedup"] / row[f"{k} mac_ratio"])


def test_section_options_are_checked(tmp_path):
    def cfg(**opts):
        return BenchConfig(suite="speed", out=str(tmp_path), opts={**PRESETS["opts"], **opts})

    with pytest.raises(ValueError, match="section='big'; valid: narrow \\(default\\), 224"):
        run(cfg(section="big"))
    with pytest.raises(TypeError, match="unknown options \\['model'\\]"):
        run(cfg(section="224", model=["resnet50"]))
    with pytest.raises(ValueError, match="runtimes \\['tvm'\\] not among eager, compile, onnxruntime"):
        run(cfg(section="224", runtimes=["tvm"]))
    with pytest.raises(ValueError, match="only_models \\['vit_b_16'\\] not among resnet50"):
        run(cfg(section="224", models=["resnet50"], only_models=["vit_b_16"]))
    with pytest.raises(TypeError, match="unknown options \\['onnx'\\]"):
        run(cfg(section="224", onnx=False))  # a narrow-section option at a non-preset value
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        speed224.build("resnet18", 0.5, 16, torch.randn(1, 3, 32, 32))
    narrow = BenchConfig(suite="speed", out=str(tmp_path), resume=True, opts=dict(PRESETS["opts"]))
    with pytest.raises(ValueError, match="--resume and --full are for the 224-px section"):
        run(narrow)
