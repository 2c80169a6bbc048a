"""Same command, same seed, same machine: bit-identical weights and metrics for `prunekit train` and
`prunekit prune` (the model is built after seeding; data order, augmentation, validation split and DataLoader
workers draw from seeded generators)."""
from __future__ import annotations

import json

import pytest
import torch

from prunekit.cli import main

from .cli_helpers import prune_argv, tensors, tiny_fmnist, train_argv

pytestmark = pytest.mark.usefixtures("single_thread")


def run_metrics(report: dict) -> dict:
    """What a run computed: metrics without timings, and the training history without wall times."""
    out = {side: {k: v for k, v in (m or {}).items() if k not in ("latency", "latency_ms")}
           for side, m in report["metrics"].items()}
    out["history"] = [{k: v for k, v in row.items() if k != "time_s"} for row in report.get("history", [])]
    return out


def assert_same_run(a, b) -> None:
    ta, tb = tensors(a / "model.safetensors"), tensors(b / "model.safetensors")
    assert sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta), [k for k in ta if not torch.equal(ta[k], tb[k])]
    ra, rb = (json.loads((p / "report.json").read_text()) for p in (a, b))
    assert run_metrics(ra) == run_metrics(rb)
    return ta, tb


@pytest.mark.parametrize("extra", [[], ["--augment", "--workers", "2", "--val-size", "0.2"]],
                         ids=["plain", "augment-workers"])
def test_train_twice_is_bit_identical(tmp_path, extra):
    data = tiny_fmnist(tmp_path / "data")
    argv = lambda out, seed: train_argv(data, tmp_path / out, "--seed", str(seed), *extra)  # noqa: E731
    assert main(argv("a", 7)) == 0
    assert main(argv("b", 7)) == 0
    ta, _ = assert_same_run(tmp_path / "a", tmp_path / "b")
    assert main(argv("c", 8)) == 0  # the seed matters: another one gives other weights
    tc = tensors(tmp_path / "c" / "model.safetensors")
    assert not torch.equal(ta["conv1.weight"], tc["conv1.weight"])


def test_prune_twice_is_bit_identical(tmp_path):
    argv = lambda out: prune_argv(tmp_path / out, tmp_path / f"cache-{out}", "--method", "oneshot",  # noqa: E731
                                  "--criterion", "taylor", "--ratio", "0.3", "--seed", "3", "--distill")
    assert main(argv("a")) == 0
    assert main(argv("b")) == 0  # trains its own base: its own cache folder
    assert_same_run(tmp_path / "a", tmp_path / "b")
    ra = json.loads((tmp_path / "a" / "report.json").read_text())
    assert ra["extra"]["base"]["cached"] is False
    # a cached base gives the same pruned model as a freshly trained one
    assert main(prune_argv(tmp_path / "c", tmp_path / "cache-a", "--method", "oneshot", "--criterion", "taylor",
                           "--ratio", "0.3", "--seed", "3", "--distill")) == 0
    assert json.loads((tmp_path / "c" / "report.json").read_text())["extra"]["base"]["cached"] is True
    assert_same_run(tmp_path / "a", tmp_path / "c")
