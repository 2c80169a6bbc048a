"""Data: an explicit --data-dir is the only place read (missing or incomplete: the run fails naming what is
missing, even where a system copy exists), and report.json records the files actually read."""
from __future__ import annotations

import hashlib
import json

import pytest

from prunekit.cli import main
from prunekit.data import fashion_mnist

from .cli_helpers import tiny_fmnist, train_argv

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A complete Fashion-MNIST where the system copy lives, and no $PRUNEKIT_DATA."""
    system = tiny_fmnist(tmp_path / "system", n_train=80)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [system])
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return system


@pytest.mark.parametrize("state", ["missing", "empty", "incomplete"])
def test_explicit_data_dir_is_used_or_the_run_fails(capsys, tmp_path, system_copy, state):
    mine = tmp_path / "mine"
    if state != "missing":
        mine.mkdir()
    if state == "incomplete":
        tiny_fmnist(mine)
        (mine / "t10k-images-idx3-ubyte.gz").unlink()
    assert main(train_argv(mine, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    want = {"missing": "does not exist", "empty": "lacks train-images-idx3-ubyte, train-labels-idx1-ubyte",
            "incomplete": "lacks t10k-images-idx3-ubyte"}[state]
    assert f"Fashion-MNIST not found in --data-dir {mine}: {want}" in err
    assert str(system_copy) in err  # named as what is searched only without --data-dir
    assert not (tmp_path / "run" / "report.json").exists()


def test_report_records_the_files_read(tmp_path, system_copy):
    mine = tiny_fmnist(tmp_path / "mine", n_train=50)
    assert main(train_argv(mine, tmp_path / "a")) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    read = report["data_read"]
    assert read["root"] == str(mine.resolve()) and report["data"]["train"] == 40  # 50 - 10 validation
    assert {f["name"]: (f["bytes"], f["sha256"]) for f in read["files"]} == {
        p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in mine.iterdir()}
    argv = train_argv(mine, tmp_path / "b")
    del argv[argv.index("--data-dir"):argv.index("--data-dir") + 2]
    assert main(argv) == 0  # without --data-dir: the system copy, and the report says so
    read = json.loads((tmp_path / "b" / "report.json").read_text())["data_read"]
    assert read["root"] == str(system_copy.resolve()) and len(read["files"]) == 4


def test_data_dir_for_the_bundled_digits_is_refused(capsys, tmp_path):
    assert main(["train", "--model", "lenet300", "--dataset", "digits", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "run")]) == 2
    assert (f"the digits data set is bundled with scikit-learn; --data-dir {tmp_path} does not apply"
            in capsys.readouterr().err)
