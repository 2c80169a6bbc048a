"""`prunekit bench speed --quick`, reading pruned architectures back from runs.json, and
`prunekit bench compression --quick` gathering (or making) Deep Compression results."""
from __future__ import annotations

import json
import sys

import pytest
import torch

import prunekit as pk
from prunekit.bench.common import widths
from prunekit.bench.speed import collect, rebuild
from prunekit.cli import main
from prunekit.models import create

from .helpers import check_folder

pytestmark = pytest.mark.usefixtures("single_thread")


def test_speed_quick(tmp_path):
    out = tmp_path / "speed"
    assert main(["bench", "speed", "--quick", "--out", str(out)]) == 0
    results = check_folder(out, "speed")
    for r in results["results"]:
        assert 1.5 < r["mac_ratio"] < 2.6  # quick: two plans at 50% MACs
        for key in ("torch_1", "torch_8", "onnx_1", "onnx_8"):
            assert r[key] > 0
    assert results["plots"] == ["speedup_vs_mac_ratio_resnet20.png"]


def test_speed_hw_widths_add_rounded_uniform_models(tmp_path):
    out = tmp_path / "speed"
    assert main(["bench", "speed", "--quick", "--opt", "hw_widths=[4, 16]", "--out", str(out)]) == 0
    runs = json.loads((out / "runs.json").read_text())
    notes = json.loads((out / "results.json").read_text())["notes"]  # 16 channels cannot halve a 4-16-wide net
    assert any("at 50% of the MACs with widths multiples of 16: not timed" in n and "round_to=16" in n
               for n in notes)
    hw = [r for r in runs if any(m.startswith("hw: 50%, uniform l1, widths multiples of 4") for m in r["models"])]
    assert len(hw) == 1 and len(runs) == 3  # the two quick plans and the rounded one
    base = {g.name: g.size for g in pk.trace(create("resnet20", num_classes=10, in_channels=1, width=0.25),
                                             torch.randn(1, 1, 28, 28)).prunable_groups()}
    pruned = {n: w for n, w in hw[0]["widths"].items() if n in base and w < base[n]}
    assert pruned and all(w % 4 == 0 for w in pruned.values())
    assert 1.6 < hw[0]["mac_ratio"] < 2.6 and hw[0]["torch_8"] > 0


def test_speed_rebuilds_recorded_architectures(tmp_path):
    x = torch.randn(1, 1, 28, 28)
    runs = []
    for seed, policy in ((0, "uniform"), (0, "global"), (1, "global")):
        m = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
        ref = pk.trace(m, x)
        plan = pk.plan(m, x, target=pk.Target(macs=0.5), criterion="l1", policy=policy)
        p = pk.apply(m, plan)
        runs.append({"arch": "resnet20", "width": 0.25, "target": 0.5, "method": policy, "seed": seed,
                     "macs": pk.count(p, x).macs, "widths": widths(p, x, ref)})
    (tmp_path / "redundancy").mkdir()
    (tmp_path / "redundancy" / "runs.json").write_text(json.dumps(runs + [dict(runs[0], method="same arch")]))
    entries = collect(tmp_path)
    assert len(entries) == 2  # first seed only; identical architectures once
    assert entries[0]["models"] == ["redundancy: 50%, uniform", "redundancy: 50%, same arch"]
    # global l1 here takes layer1.2.conv1 down to one channel: the tracer no longer lists that group, the
    # widths read off the tensors still do
    assert entries[1]["widths"]["layer1.2.conv1"] == 1
    for e in entries:
        dense, pruned = rebuild(e["arch"], e["width"], e["widths"], x)
        assert pk.count(pruned, x).macs == e["macs"]
        assert pruned(x).shape == dense(x).shape == (1, 10)
    with pytest.raises(ValueError, match="not in the base"):
        rebuild("resnet20", 0.25, {"no.such.layer": 3}, x)


DC_RESULTS = {"command": "python benchmarks/deep_compression.py --quick", "date": "today", "quick": True,
              "machine": {"cpu_count": 2}, "runs": [
                  {"model": "lenet300", "ratio": 41.0, "accuracy_drop_points": 0.3, "goal_met": True,
                   "exact_reload": True,
                   "layers": [{"key": "fc1.weight", "numel": 1000, "density": 0.08}],
                   "stages": [{"stage": "dense", "bytes": 41000, "ratio": 1.0, "accuracy": 0.89},
                              {"stage": "pruned", "bytes": 4100, "ratio": 10.0, "accuracy": 0.888},
                              {"stage": "quantized", "bytes": 1100, "ratio": 37.3, "accuracy": 0.887},
                              {"stage": "huffman", "bytes": 1000, "ratio": 41.0, "accuracy": 0.887}]}]}


def test_compression_gathers(tmp_path):
    src = tmp_path / "dc"
    src.mkdir()
    (src / "results.json").write_text(json.dumps(DC_RESULTS))
    out = tmp_path / "compression"
    assert main(["bench", "compression", "--quick", "--out", str(out), "--opt", f"source={src}"]) == 0
    results = check_folder(out, "compression")
    (row,) = results["results"]
    assert row["model"] == "lenet300" and row["ratio"] == 41.0 and row["final_top1"] == 0.887
    assert row["density"] == pytest.approx(0.08) and row["drop"] == pytest.approx(0.3)
    assert "| lenet300 |" in (out / "results.md").read_text()


def test_compression_runs_the_quick_variant_when_missing(tmp_path):
    script = tmp_path / "fake_dc.py"  # stands in for benchmarks/deep_compression.py (minutes when real)
    script.write_text("import json, sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
                      "assert '--quick' in sys.argv\nout.mkdir(parents=True, exist_ok=True)\n"
                      f"(out / 'results.json').write_text(json.dumps({DC_RESULTS!r}))\n")
    out = tmp_path / "compression"
    assert main(["bench", "compression", "--quick", "--out", str(out), "--opt", f"source={tmp_path / 'none'}",
                 "--opt", f"script={script}"]) == 0
    results = check_folder(out, "compression")
    assert (out / "deep_compression_quick" / "results.json").is_file()
    assert any("ran" in n and "--quick" in n for n in results["notes"])
    assert sys.executable in " ".join(results["notes"])
