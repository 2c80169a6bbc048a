"""`prunekit bench coarse --quick` and `prunekit bench admm --quick`: table shape and sanity; every suite refuses a
bad `--opt` before it trains a base or runs a row."""
from __future__ import annotations

import pytest

from prunekit.cli import main

from .helpers import check_folder, check_pruned_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_coarse_quick(tmp_path):
    out = tmp_path / "coarse"
    assert main(["bench", "coarse", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = check_folder(out, "coarse")
    rows = {r["method"]: r for r in results["results"]}
    assert set(rows) == {"coarse", "iterative"}
    check_pruned_rows(list(rows.values()), 0.5)
    co, it = rows["coarse"], rows["iterative"]
    assert co["train_steps"] == it["train_steps"] == results["budget"]["finetune_steps_per_epoch"]
    assert co["ranking_batches"] == 0 and it["ranking_batches"] > 0  # coarse runs no ranking pass of its own
    assert 0 <= co["ranking_s"] <= co["total_s"] and 0 < it["ranking_s"] <= it["total_s"]
    assert co["saved"] == pytest.approx(1 - co["total_s"] / it["total_s"])
    assert "time_split.png" in results["plots"]


def test_admm_quick(tmp_path):
    out = tmp_path / "admm"
    assert main(["bench", "admm", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = check_folder(out, "admm")
    rows = {r["method"]: r for r in results["results"]}
    assert set(rows) == {"admm + l1", "one-shot l1", "one-shot l1, ADMM's steps", "iterative l1"}
    check_pruned_rows(list(rows.values()), 0.5)
    m = results["budget"]["finetune_steps_per_epoch"]
    k = results["budget"]["opt.iterations"]
    assert rows["one-shot l1"]["train_steps"] == m
    assert rows["admm + l1"]["train_steps"] == rows["one-shot l1, ADMM's steps"]["train_steps"] == (k + 1) * m
    assert rows["admm + l1"]["removed_norm"] is not None and rows["one-shot l1"]["removed_norm"] is None
    # ADMM and one-shot allocate the same uniform counts: the same architecture
    assert rows["admm + l1"]["macs_kept"] == pytest.approx(rows["one-shot l1"]["macs_kept"])



@pytest.mark.parametrize("opt, named", [
    ("criterion=l1", "coarse ranking accumulates ('taylor', 'apoz', 'mean_activation'), not 'l1'"),
    ("policy=sideways", "sideways"),
])
def test_coarse_refuses_a_bad_option_before_training_anything(tmp_path, capsys, opt, named):
    """`bench coarse --opt criterion=l1` trained a base and ran the iterative row, then failed on the coarse
    row, which accumulates data-driven criteria only."""
    out, cache = tmp_path / "coarse", tmp_path / "cache"
    assert main(["bench", "coarse", "--quick", "--opt", opt, "--out", str(out), "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists() and not cache.exists()  # no base trained, no row run, no empty folder left


@pytest.mark.parametrize("suite, opt, named", [
    ("admm", "rho=-1", "AdmmConfig: rho=-1 must lie in (0.0, inf]"),
    ("admm", "policy=sideways", "unknown policy 'sideways'"),
    ("compression", "centroid_lr=-1", "compression: --opt centroid_lr=-1 must be a number > 0"),
    ("coarse", "every=2.5", "coarse: --opt every=2.5 must be an integer >= 1"),  # ran with every=2
    ("admm", "iterations=1.5", "admm: --opt iterations=1.5 must be an integer >= 1"),
])
def test_suites_refuse_a_bad_option_before_training_and_leave_no_folder(tmp_path, capsys, suite, opt, named):
    """`bench admm --opt rho=-1` trained a base before AdmmConfig refused rho, and left rows.jsonl (a header
    without rows) in a folder the retry then refused as an earlier run; compression named centroid_lr
    `finetune_lr`."""
    out, cache = tmp_path / suite, tmp_path / "cache"
    assert main(["bench", suite, "--quick", "--opt", opt, "--out", str(out), "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists() and not cache.exists()


@pytest.mark.parametrize("opt, named", [
    ("parts=[bogus]", "--opt parts=['bogus']: give a non-empty list of unstructured, structured, lm"),
    ("structured_ratio=2", "--opt structured_ratio=2 must be a fraction in (0, 1)"),
    ("depth_remove=0", "--opt depth_remove=0 must be an integer >= 1"),
    ("lm_heads=5", "lm_hidden (32) must be a multiple of lm_heads (5)"),
])
def test_transformers_suite_refuses_a_bad_option_before_its_first_row(tmp_path, capsys, opt, named):
    """`bench transformers --opt parts=[bogus]` ran no row and exited 0; `structured_ratio=2` was refused by
    the width method after the unstructured rows had run, in words that named no option."""
    out = tmp_path / "t"
    assert main(["bench", "transformers", "--quick", "--opt", opt, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("opt, named", [("calib_batches=0", "calib_batches=0: must be an integer >= 1"),
                                        ("qat_steps=2.5", "qat_steps=2.5: must be an integer >= 1"),
                                        ("round_to=0", "round_to must be an integer >= 1"),
                                        ("transformer=yes please", "--opt transformer='yes please': give true or false"),
                                        ("text_steps=2.5", "quantize: --opt text_steps=2.5 must be an integer >= 1")])
def test_quantize_suite_refuses_a_bad_option_before_training_a_base(tmp_path, capsys, opt, named):
    """`bench quantize --opt calib_batches=0` trained the base first; `qat_steps=2.5` ran 2 steps, and the
    MiniLM part's `text_steps=2.5` ran 2 after the CNN part."""
    out, cache = tmp_path / "q", tmp_path / "cache"
    extra = ["--opt", "transformer=true"] if opt.startswith("text") else []
    assert main(["bench", "quantize", "--quick", "--opt", opt, *extra, "--out", str(out),
                 "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists() and not cache.exists()
