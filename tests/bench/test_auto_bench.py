"""`prunekit bench auto` rows are workflow runs: the plan comes from the one planning path (checked, its config
recorded), fine-tuning is the workflow's recovery, and live objects in the options are recorded as given."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

import prunekit as pk
from prunekit.bench import auto as bench_auto
from prunekit.cli import main
from prunekit.config import GIVEN
from prunekit.criteria import get_criterion
from prunekit.graph.cost import predict
from prunekit.models import create
from prunekit.policies import get_policy
from prunekit.workflow import PruneConfig, WorkflowConfig


class MacsLatency:
    """A latency model whose latency is the MAC fraction: deterministic, so the knob search is exact."""

    def __init__(self, graph):
        self.graph, self.base = graph, predict(graph, {})["macs"]

    def ratio(self, counts):
        return predict(self.graph, counts)["macs"] / self.base

    def measure_many(self, many, rounds=1):
        return [10.0 * self.ratio(c) for c in many]


@pytest.fixture(scope="module")
def bench():
    parser = argparse.ArgumentParser()
    bench_auto.add_arguments(parser)
    args = parser.parse_args(["--train-subset", "256", "--val-size", "128", "--test-subset", "128",
                              "--batch-size", "64", "--finetune-epochs", "1", "--max-steps-per-epoch", "2"])
    data = bench_auto._loaders(args)
    torch.manual_seed(0)
    base = create("resnet20", in_channels=1, num_classes=10, width=0.25).eval()
    example = torch.randn(1, 1, 28, 28)
    graph = pk.trace(base, example)
    b = bench_auto._Bench(args, base, graph, get_criterion("l1")(base, graph), example, data)
    b.lm = MacsLatency(graph)
    return b


@pytest.mark.parametrize("policy", ["uniform", "global"])
def test_one_knob_row_is_a_checked_workflow_plan_at_the_searched_ratio(bench, policy):
    before = {k: v.clone() for k, v in bench.base.state_dict().items()}
    row, model = bench_auto._row(bench, policy, 0.5, log=lambda m: None)
    # the workflow planned at the ratio the knob search found, and landed on the searched widths
    assert row["plan_matches_search"] is True
    assert row["counts"] == get_policy(policy)(bench.base, bench.graph, bench.scores, ratio=row["ratio"])
    assert row["plan"]["method"] == "oneshot" and row["plan"]["policy"] == policy
    assert row["plan"]["ratio"] == pytest.approx(row["ratio"])
    assert 0.4 < row["measured_ratio_at_search"] <= 0.5 * 1.03
    assert row["macs_kept"] == pytest.approx(bench.lm.ratio(row["counts"]), abs=0.02)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in bench.base.parameters())
    assert 0.0 <= row["top1_pruned"] <= 1.0 and 0.0 <= row["top1"] <= 1.0
    assert row["finetune_s"] > 0  # the workflow's recovery ran (2 capped steps)
    # the shared base is untouched: every row prunes a copy
    assert all(torch.equal(before[k], v) for k, v in bench.base.state_dict().items())


def test_live_objects_in_options_are_recorded_as_given(bench):
    loader = bench.data.loaders.val
    cfg = WorkflowConfig(model={"name": "resnet20"}, prune=PruneConfig(
        policy="auto", target={"latency": 0.5}, options={"policy_kwargs": {"val_data": loader, "evaluations": 3,
                                                                            "log_fn": print}}))
    d = cfg.to_dict()
    assert d["prune"]["options"]["policy_kwargs"] == {"val_data": GIVEN, "evaluations": 3, "log_fn": GIVEN}
    json.dumps(d)  # plain JSON, no loader copied into it
    assert cfg.prune.options["policy_kwargs"]["val_data"] is loader  # the config itself keeps the object


@pytest.mark.parametrize("flags, named", [
    (["--methods", "bogus"], "--methods bogus: give auto, auto-nohw (searched widths"),
    (["--methods", "auto-foo"], "--methods auto-foo: give auto, auto-nohw"),  # was run as auto
    (["--methods", "uniform", "srr", "uniform"], "--methods names uniform more than once"),
    (["--criterion", "bogus"], "unknown criterion 'bogus'"),
])
def test_bench_auto_refuses_bad_methods_before_training(tmp_path, capsys, flags, named):
    """`bench auto --methods bogus` trained the base and built the latency model before the policy lookup
    failed; `--methods auto-foo` ran as auto (any name starting with "auto" did)."""
    out = tmp_path / "a"
    assert main(["bench", "auto", "--quick", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()
