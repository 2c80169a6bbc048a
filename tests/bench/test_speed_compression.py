"""`prunekit bench speed --quick`, reading pruned architectures back from runs.json, and
`prunekit bench compression --quick` running Deep Compression through run_workflow."""
from __future__ import annotations

import json

import pytest
import torch

import prunekit as pk
from prunekit.bench.common import widths
from prunekit.bench.compression import SETUPS
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
    # it trains nothing and reads no data: the Budget table says so instead of listing unused values
    md = (out / "results.md").read_text()
    assert "| base_epochs | not read: the speed suite does not read it (it reads --archs, --latency-runs, --targets, --threads) |" in md and "| seeds | not read:" in md
    assert "| archs | resnet20 (width 0.25) |" in md


@pytest.mark.parametrize("suite, flags, named", [
    ("speed", ["--seeds", "5", "7"], "--seeds: the speed suite does not read it"),
    ("speed", ["--base-epochs", "9", "--dataset", "cifar10"], "--dataset: the speed suite does not read it"),
    ("transformers", ["--archs", "vgg11:1"], "--archs: the transformers suite does not read it"),
    ("transformers", ["--finetune-lr", "3", "--no-peer"], "--no-peer: the transformers suite does not read it"),
])
def test_suites_refuse_settings_they_do_not_read(tmp_path, capsys, suite, flags, named):
    """`bench transformers --archs vgg11:1 --base-epochs 5 ...` ran its usual rows and wrote the unused values
    into its Budget table."""
    out = tmp_path / "s"
    assert main(["bench", suite, "--quick", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "(it reads --" in err
    assert not out.exists()


@pytest.mark.parametrize("suite", ["admm", "quantize", "compression"])
def test_suites_whose_rows_read_no_batches_refuse_score_batches(tmp_path, capsys, suite):
    """`bench admm --score-batches 16` ran its l1 rows as before and recorded 16 in its Budget table."""
    out = tmp_path / "s"
    assert main(["bench", suite, "--quick", "--score-batches", "16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--score-batches: " in err and "reads no" in err and "Traceback" not in err
    assert not out.exists()


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


def test_compression_quick_runs_the_workflow(tmp_path):
    out = tmp_path / "compression"
    assert main(["bench", "compression", "--quick", "--out", str(out)]) == 0
    results = check_folder(out, "compression")
    assert [(r["model"], r["seed"]) for r in results["results"]] == [("lenet300", 0), ("lenet5", 0)]
    runs = {r["model"]: r for r in json.loads((out / "runs.json").read_text())}
    for model, row in runs.items():
        folder = out / row["folder"]
        report = json.loads((folder / "report.json").read_text())
        assert report["method"]["name"] == "deep_compression"  # each row is one run_workflow run
        assert [s["stage"] for s in row["stages"]] == ["dense", "pruned", "quantized", "huffman"]
        # the file in the row's folder is the Huffman stage, read back bit for bit
        assert (folder / "model.pkz").stat().st_size == row["final_bytes"] == row["stages"][-1]["bytes"]
        assert row["exact_reload"] is True and row["ratio"] == pytest.approx(row["dense_bytes"] / row["final_bytes"])
        assert report["metrics"]["after"]["size_bytes"] == row["final_bytes"]
        # the per-layer rates of the model's setup were applied
        kept = {layer["key"]: layer["nonzero"] / layer["numel"] for layer in row["layers"]}
        want = {f"{k}.weight": 1 - v for k, v in SETUPS[model].sparsity.items()}
        assert kept == pytest.approx(want, abs=0.01)
        assert pk.load(folder / "model.pkz")(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    md = (out / "results.md").read_text()
    assert "| lenet300 | 0 |" in md and "| lenet5 | 0 |" in md and "fc1.weight" in md
    # --base-max-steps caps the base (4 steps in the quick preset), --finetune-steps only the later phases
    assert {row["base"]["max_steps"] for row in runs.values()} == {4}
    # the Budget table says which of its settings this suite does not read
    assert "| base_epochs | not read: set per model" in md and "| latency_runs | not read: nothing is timed" in md


def test_compression_resume_keeps_finished_rows(tmp_path):
    out = tmp_path / "compression"
    args = ["bench", "compression", "--quick", "--out", str(out)]
    assert main(args) == 0
    first = (out / "rows.jsonl").read_text()
    (out / "rows.jsonl").write_text("\n".join(first.splitlines()[:2]) + "\n")  # header + the lenet300 row
    assert main(args + ["--resume"]) == 0
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 3 and lines[:2] == first.splitlines()[:2]  # lenet300 kept, lenet5 run again
    # same command and seed on the same machine: the rerun lenet5 row is the same run
    again, before = json.loads(lines[2]), json.loads(first.splitlines()[2])
    assert again["model"] == "lenet5" and again["stages"] == before["stages"]


def test_compression_refuses_an_unknown_model():
    from prunekit.bench.compression import setup_for
    from prunekit.bench.config import make_config
    from prunekit.bench.compression import PRESETS
    cfg = make_config("compression", True, PRESETS)
    with pytest.raises(ValueError, match="no Deep Compression setup for 'resnet20'"):
        setup_for(cfg, "resnet20")


@pytest.mark.parametrize("flags, message", [
    (["--full"], "default budget is the paper's already"),
    (["--targets", "0.5"], "--targets: Deep Compression removes per-layer fractions of weights"),
    (["--base-epochs", "3"], "--base-epochs: set per model"),
    (["--latency-runs", "5"], "--latency-runs: nothing is timed"),
])
def test_compression_refuses_flags_it_would_not_read(tmp_path, flags, message, capsys):
    assert main(["bench", "compression", "--out", str(tmp_path / "c"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("flags, named", [
    (["--quick", "--opt", "hw_widths=[0]"], "--opt hw_widths=[0]: give a list of channel multiples"),
    (["--quick", "--opt", "onnx=5"], "--opt onnx=5: give true or false"),
    (["--quick", "--opt", "results_dir=/nowhere"], "--opt results_dir='/nowhere' is not read with --quick"),
    (["--opt", "section=224", "--opt", "batches=[0]"], "--opt batches=[0]: give a non-empty list of batch sizes"),
    (["--opt", "section=224", "--opt", "compile_batches=[64]"], "compile_batches [64] are not among batches [1, 16]"),
    (["--opt", "section=224", "--opt", "round_to=2.5"], "speed 224: --opt round_to=2.5 must be an integer >= 1"),
])
def test_speed_refuses_option_values_it_would_ignore_or_misread(tmp_path, capsys, flags, named):
    """`--opt batches=[0]` and `compile_batches=[-1]` ran and timed nothing at those batches, `onnx=5` read as
    true, `results_dir` was ignored by --quick, and `hw_widths=4` failed with "'int' object is not iterable"."""
    out = tmp_path / "s"
    assert main(["bench", "speed", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()
