"""Nothing is overwritten without being asked: every writing command refuses a folder holding an earlier run
(any prunekit output) unless --overwrite, refuses an --out that overlaps its input, and --resume needs
something to resume."""
from __future__ import annotations

import pytest

from prunekit.cli import main
from prunekit.workflow import (NothingToResumeError, OutputConflictError, OutputExistsError, earlier_outputs,
                               prepare_output_dir)

from .cli_helpers import prune_argv, snapshot, train_argv, trained_run

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished LeNet-5 train run and the tiny data it read."""
    return trained_run(tmp_path_factory.mktemp("runs"), "t1")


def refused(capsys, argv: list[str], folder, text: str) -> None:
    """argv fails with `text` in its one-line message and leaves `folder` byte for byte as it was."""
    before = snapshot(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err, err
    assert snapshot(folder) == before


def test_prune_into_a_train_run_is_refused(capsys, tmp_path, runs):
    _, t1 = runs
    refused(capsys, prune_argv(t1, tmp_path / "cache", "--ratio", "0.3"), t1,
            f"out (--out) {t1} holds an earlier run (best.pt, last.pt, model.json, model.safetensors, report.json, "
            "report.md already exist); pass overwrite=True (--overwrite)")


def test_out_equal_inside_or_containing_the_base_is_refused_even_with_overwrite(capsys, tmp_path, runs):
    data, t1 = runs
    base = ["--base", str(t1), "--dataset", "fashion-mnist", "--data-dir", str(data), "--ratio", "0.3",
            "--latency-runs", "0", "--overwrite"]
    for out, how in ((t1, "is"), (t1 / "pruned", "is inside"), (t1.parent, "contains")):
        refused(capsys, ["prune", "--out", str(out), *base], t1, f"out (--out) {out} {how} the folder of the input {t1}")
    model_file = t1 / "model.safetensors"
    refused(capsys, ["prune", "--out", str(t1), *base[:1], str(model_file), *base[2:]], t1,
            f"out (--out) {t1} is the folder of the input {model_file}")


def test_train_into_a_prune_run_is_refused(capsys, tmp_path, runs):
    data, _ = runs
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "plan.json").write_text("{}")
    (folder / "before_after.png").write_bytes(b"png")
    refused(capsys, train_argv(data, folder), folder, "holds an earlier run (before_after.png, plan.json already exist)")


def test_resume_needs_a_checkpoint(capsys, tmp_path, runs):
    data, _ = runs
    assert main(train_argv(data, tmp_path / "missing", "--resume")) == 2
    assert f"nothing to resume: {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    assert main(train_argv(data, tmp_path / "missing", "--resume", "--overwrite")) == 2
    assert "give one of them" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    refused(capsys, train_argv(data, tmp_path / "empty", "--resume"), tmp_path / "empty",
            f"nothing to resume: {tmp_path / 'empty'} holds no last.pt")


def test_overwrite_replaces_a_run_and_leaves_other_files(tmp_path, runs):
    data, t1 = runs
    out = tmp_path / "t2"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "finetune_curve.png").write_bytes(b"stale plot of an older run")
    (out / "last.pt").write_bytes((t1 / "last.pt").read_bytes())
    assert main(train_argv(data, out, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"                # not a prunekit output: untouched
    assert not (out / "finetune_curve.png").exists()                 # the old run's files are gone
    assert sorted(earlier_outputs(out)) == ["best.pt", "last.pt", "model.json", "model.safetensors", "report.json",
                                            "report.md"]


def test_analyze_report_decompress_and_compress_refuse_earlier_outputs(capsys, tmp_path, runs):
    _, t1 = runs
    out = tmp_path / "an"
    argv = ["analyze", "--model", "lenet5", "--out", str(out), "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    refused(capsys, argv, out, "holds an earlier run (analysis.json, analyze.png already exist)")
    assert main(argv + ["--overwrite"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    refused(capsys, ["report", str(out)], out, f"--out {out / 'report.html'} exists; pass overwrite=True (--overwrite)")
    pkz = tmp_path / "m.pkz"
    assert main(["compress", str(t1 / "model.safetensors"), "-o", str(pkz), "--bits-conv", "0", "--bits-linear",
                 "0"]) == 0
    dense = tmp_path / "dense"
    assert main(["decompress", str(pkz), "-o", str(dense)]) == 0
    capsys.readouterr()
    refused(capsys, ["decompress", str(pkz), "-o", str(dense)], dense, "holds an earlier run (model.json, "
            "model.safetensors already exist)")
    assert main(["decompress", str(pkz), "-o", str(dense), "--overwrite"]) == 0
    refused(capsys, ["decompress", str(pkz), "-o", str(tmp_path)], tmp_path, f"holds the input {pkz}")


def test_prepare_output_dir_rules(tmp_path):
    run = tmp_path / "run"
    assert prepare_output_dir(run) == run and run.is_dir()          # created
    (run / "results.json").write_text("{}")
    (run / "m.onnx").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"holds an earlier run \(m.onnx, results.json already exist\)"):
        prepare_output_dir(run)
    prepare_output_dir(run, overwrite=True)
    assert list(run.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not a folder"):
        prepare_output_dir(tmp_path / "file", overwrite=True)
    with pytest.raises(NothingToResumeError, match="holds no last.pt"):
        prepare_output_dir(run, resume=True)
    with pytest.raises(OutputConflictError, match="contains the folder of the input"):
        prepare_output_dir(tmp_path, overwrite=True, protect=[run])


@pytest.mark.parametrize("command", ["export", "compress"])
def test_a_file_output_onto_the_input_folders_model_is_refused_even_with_overwrite(capsys, runs, command):
    """`export RUN -o RUN/model.safetensors --overwrite` would replace the model it reads: refused, the run intact."""
    _, t1 = runs
    for name in ("model.safetensors", "model.json", "last.pt"):
        refused(capsys, [command, str(t1), "-o", str(t1 / name), "--overwrite"], t1,
                f"--out {t1 / name} is the model file {name} of the input {t1}")
