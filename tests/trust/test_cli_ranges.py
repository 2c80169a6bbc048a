"""Every numeric flag is range-checked by argparse: a bad value stops the command with a one-line usage error
that names the flag and the valid range, before any work."""
from __future__ import annotations

import pytest

from prunekit.cli import build_parser

PRUNE = ["prune", "--model", "resnet20"]
TRAIN = ["train", "--model", "lenet5"]
COMPRESS = ["compress", "m.safetensors", "-o", "m.pkz"]

BAD = [
    (PRUNE, "--ratio", "1.5", "must be a number in [0, 1), got 1.5"),
    (PRUNE, "--ratio", "1", "must be a number in [0, 1), got 1"),
    (PRUNE, "--ratio", "-0.1", "must be a number in [0, 1), got -0.1"),
    (PRUNE, "--width", "0", "must be a number > 0, got 0"),
    (PRUNE, "--num-classes", "0", "must be an integer >= 2, got 0"),
    (PRUNE, "--num-classes", "1", "must be an integer >= 2, got 1"),
    (PRUNE, "--latency-runs", "-5", "must be an integer >= 0, got -5"),
    (PRUNE, "--round-to", "0", "must be an integer >= 1, got 0"),
    (PRUNE, "--max-ratio", "2", "must be a number in (0, 1), got 2"),
    (PRUNE, "--max-ratio", "-1", "must be a number in (0, 1), got -1"),
    (PRUNE, "--min-channels", "-1", "must be an integer >= 1, got -1"),
    (PRUNE, "--target-macs", "0", "must be a number in (0, 1], got 0"),
    (PRUNE, "--target-params", "1.5", "must be a number in (0, 1], got 1.5"),
    (PRUNE, "--epochs", "-1", "must be an integer >= 0, got -1"),
    (PRUNE, "--lr", "0", "must be a number > 0, got 0"),
    (PRUNE, "--finetune-lr", "nan", "expected a finite number, got 'nan'"),
    (PRUNE, "--batch-size", "0", "must be an integer >= 1, got 0"),
    (PRUNE, "--seed", "-3", "must be an integer >= 0, got -3"),
    (PRUNE, "--val-size", "1.5", "must be a count >= 1 or a fraction in [0, 1), got 1.5"),
    (PRUNE, "--subset", "2.5", "expected an integer, got '2.5'"),
    (PRUNE, "--distill-weight", "1.2", "must be a number in [0, 1], got 1.2"),
    (TRAIN, "--epochs", "-2", "must be an integer >= 0, got -2"),
    (TRAIN, "--lr", "-0.1", "must be a number > 0, got -0.1"),
    (TRAIN, "--label-smoothing", "1", "must be a number in [0, 1), got 1"),
    (TRAIN, "--workers", "-1", "must be an integer >= 0, got -1"),
    (TRAIN, "--max-steps-per-epoch", "0", "must be an integer >= 1, got 0"),
    (COMPRESS, "--bits-conv", "-1", "must be an integer in [0, 16], got -1"),
    (COMPRESS, "--bits-linear", "17", "must be an integer in [0, 16], got 17"),
    (COMPRESS, "--kmeans-iters", "-3", "must be an integer >= 1, got -3"),
    (COMPRESS, "--sparsity", "1", "must be a number in [0, 1), got 1"),
    (["info", "lenet5"], "--runs", "-1", "must be an integer >= 0, got -1"),
    (["report", "runs/x"], "--depth", "-1", "must be an integer >= 0, got -1"),
    (["analyze", "--model", "lenet5"], "--quantile", "0", "must be a number in (0, 1), got 0"),
    (["bench", "speed"], "--targets", "0", "must be a number in (0, 1], got 0"),
    (["bench", "redundancy"], "--latency-runs", "0", "must be an integer >= 1, got 0"),  # it timed once anyway
    (["prune", "--model", "hf:x"], "--heldout", "2", "must be an integer >= 3, got 2"),  # spearman was nan
    (["bench", "auto"], "--threads", "0", "must be an integer >= 1, got 0"),
    (["demo"], "--target-macs", "2", "must be a number in (0, 1], got 2"),
]


@pytest.mark.parametrize("head,flag,value,message", BAD, ids=[f"{b[0][0]}{b[1]}={b[2]}" for b in BAD])
def test_bad_number_is_refused_by_argparse(capsys, head, flag, value, message):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*head, flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {message}" in err and "Traceback" not in err


def test_boundary_values_are_accepted():
    a = build_parser().parse_args([*PRUNE, "--ratio", "0", "--max-ratio", "0.5", "--target-macs", "1",
                                   "--num-classes", "2", "--val-size", "0.1", "--round-to", "8"])
    assert (a.ratio, a.max_ratio, a.target_macs, a.num_classes, a.val_size, a.round_to) == (0.0, 0.5, 1.0, 2, 0.1, 8)
    assert build_parser().parse_args([*PRUNE, "--val-size", "500"]).val_size == 500
    c = build_parser().parse_args([*COMPRESS, "--bits-conv", "0", "--bits-linear", "16", "--kmeans-iters", "1"])
    assert (c.bits_conv, c.bits_linear, c.kmeans_iters) == (0, 16, 1)
