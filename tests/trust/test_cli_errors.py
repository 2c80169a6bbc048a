"""The command line reports user errors as one line and a nonzero exit, never a traceback (unless --debug)."""
from __future__ import annotations

import json
import re

import pytest
import torch

import prunekit.cli
from prunekit.cli import main, warning_origin, warning_text
from prunekit.report import ReportFileError, render_html
from prunekit.train import Trainer

from .cli_helpers import prune_argv, tiny_fmnist, train_argv, trained_run

pytestmark = pytest.mark.usefixtures("single_thread")


def one_line_error(capsys, argv: list[str], rc: int = 2) -> str:
    """Run argv, check the exit status and that stderr is one message without a traceback; return it."""
    assert main(argv) == rc
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished LeNet-5 run on the tiny data (shared: the tests copy what they change)."""
    return trained_run(tmp_path_factory.mktemp("trained"))


def test_bad_device_is_an_argparse_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "lenet5", "--device", "nonsense", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "argument --device: unknown device 'nonsense'; valid: cpu, cuda, cuda:N, mps" in capsys.readouterr().err


def test_nan_loss_names_the_step(capsys, tmp_path):
    data = tiny_fmnist(tmp_path / "data")
    err = one_line_error(capsys, train_argv(data, tmp_path / "run", "--lr", "1e30"))
    assert err.startswith("prunekit train: error: loss became ") and "lower the learning rate (TrainConfig.lr, --lr)" in err
    step = int(err.split(" at step ")[1].split()[0])
    assert 1 <= step <= 6  # 50 training images in batches of 8: the first epoch has 7 steps
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_with_another_model_or_config(capsys, tmp_path, trained):
    data, run = trained
    err = one_line_error(capsys, train_argv(data, run, "--resume", model="lenet300"))
    assert f"{run / 'last.pt'} holds another model" in err and "--overwrite" in err
    err = one_line_error(capsys, train_argv(data, run, "--resume", "--lr", "0.05"))
    assert "another training configuration (lr 0.1 -> 0.05)" in err


def test_truncated_checkpoint_is_named(capsys, tmp_path, trained):
    data, run = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("last.pt", "model.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    last = copy / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    err = one_line_error(capsys, train_argv(data, copy, "--resume"))
    assert str(last) in err
    err = one_line_error(capsys, ["info", str(last), "--runs", "0"])
    assert str(last) in err
    err = one_line_error(capsys, ["info", str(run), "--width", "0.5", "--runs", "0"])  # not silently ignored
    assert f"--width size a registry model; {run} is a saved model" in err


def test_ctrl_c_says_how_to_resume(capsys, tmp_path, monkeypatch, trained):
    data, run = trained
    monkeypatch.setattr(Trainer, "fit", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    err = one_line_error(capsys, train_argv(data, tmp_path / "fresh"), rc=130)
    assert err == "prunekit train: interrupted before the first checkpoint; nothing to resume, start the run again"
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "last.pt").write_bytes((run / "last.pt").read_bytes())
    err = one_line_error(capsys, train_argv(data, copy, "--resume"), rc=130)
    assert err == f"prunekit train: interrupted; resume with --resume (from {copy / 'last.pt'})"


def test_missing_model_path_is_no_such_file(capsys, tmp_path):
    for target in (str(tmp_path / "nosuch.safetensors"), "runs/none/model.safetensors", "model.pt"):
        err = one_line_error(capsys, ["info", target, "--runs", "0"])
        assert err == f"prunekit info: error: no such file: {target}"
    err = one_line_error(capsys, ["info", "resnet21"])
    assert "unknown model 'resnet21'" in err
    err = one_line_error(capsys, ["prune", "--base", str(tmp_path / "gone"), "--ratio", "0.3", "--dataset",
                                  "digits", "--out", str(tmp_path / "o")])
    assert f"no such file or folder: {tmp_path / 'gone'}" in err


def test_bad_json_names_the_file(capsys, tmp_path, trained):
    data, run = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "last.pt").write_bytes((run / "last.pt").read_bytes())
    (copy / "model.json").write_text('{"name": "lenet5", "kwargs": {')
    err = one_line_error(capsys, ["info", str(copy / "last.pt"), "--runs", "0"])
    assert f"{copy / 'model.json'}: not a valid model description (Expecting" in err and "line 1" in err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: [oneshot\n")
    err = one_line_error(capsys, ["prune", "--model", "lenet5", "--recipe", str(recipe), "--ratio", "0.3",
                                  "--out", str(tmp_path / "o")])
    assert f"{recipe}: not valid YAML" in err


def test_report_on_a_corrupt_report_fails_naming_it(capsys, tmp_path, trained):
    _, run = trained
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "report.json").write_text('{"model": {"name": "x"}, "metrics": ')
    err = one_line_error(capsys, ["report", str(folder)])
    assert f"{folder / 'report.json'}: not valid JSON (Expecting value at line 1, column 37)" in err
    assert not (folder / "report.html").exists()
    with pytest.raises(ReportFileError, match="not valid JSON"):  # the library refuses too, no empty page
        render_html(folder)
    (folder / "report.json").write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in one_line_error(capsys, ["report", str(folder)])
    (folder / "report.json").write_text(json.dumps({"model": {"name": "x"}}))
    err = one_line_error(capsys, ["report", str(folder)])
    assert "does not follow the report schema: 'data' must be an object" in err
    nested = tmp_path / "suite"
    (nested / "a").mkdir(parents=True)
    (nested / "a" / "report.json").write_text("[1, 2")
    assert f"{nested / 'a' / 'report.json'}: not valid JSON" in one_line_error(capsys, ["report", str(nested)])
    # a good run renders
    assert main(["report", str(run), "--out", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").stat().st_size > 1000


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        main(["--debug", "prune", "--base", str(tmp_path / "gone"), "--ratio", "0.3", "--out", str(tmp_path / "o")])


def test_unreachable_target_is_an_error_unless_best_effort(capsys, tmp_path):
    argv = prune_argv(tmp_path / "p", tmp_path / "cache", "--target-macs", "0.01", "--finetune-epochs", "0")
    err = one_line_error(capsys, argv)
    assert "target macs=0.01 (achieved 0.0" in err and "cannot be met" in err
    assert not (tmp_path / "p").exists()  # a run that fails before writing leaves no folder behind
    capsys.readouterr()
    # as the console command runs it: the warning is one "prunekit prune: warning:" line, not file:line: UserWarning
    assert main(argv + ["--best-effort"], plain_warnings=True) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln.lower()]
    assert len(warned) == 1 and re.fullmatch(r"prunekit prune: warning: target macs=0\.01 .*cannot be met.*"
                                             r"\(strict=False: returning it\)", warned[0]), warned
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert 0.01 < report["summary"]["macs_kept"] < 0.1 and report["config"]["prune"]["strict"] is False


def test_warning_text_is_one_line_naming_foreign_categories():
    assert warning_text("auto: no data\n  given", UserWarning) == "auto: no data given"
    assert warning_text(DeprecationWarning("old\napi"), DeprecationWarning) == "DeprecationWarning: old api"
    assert warning_text("prototype", UserWarning, "torch") == "UserWarning from torch: prototype"
    assert warning_origin(prunekit.cli.__file__) is None
    assert warning_origin(torch.nn.modules.transformer.__file__) == "torch"


def test_ctrl_c_while_starting_is_one_line(monkeypatch, capsys):
    """An interrupt that arrives while torch is still loading (before the CLI's own handler exists)."""
    import prunekit_cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(prunekit_cli.importlib, "import_module", interrupted)
    monkeypatch.setattr(prunekit_cli.sys, "argv", ["prunekit", "train", "--model", "lenet5"])
    assert prunekit_cli.main() == 130
    err = capsys.readouterr().err
    assert err == "prunekit: interrupted while starting; nothing was run or written\n"
    monkeypatch.setattr(prunekit_cli.sys, "argv", ["prunekit", "--debug", "train"])
    with pytest.raises(KeyboardInterrupt):
        prunekit_cli.main()


def test_console_script_runs_the_cli():
    """The installed `prunekit` command goes through the guarded entry point to prunekit.cli.main."""
    import prunekit_cli
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "prunekit"]
    assert ep.value == "prunekit_cli:main"
    assert ep.load() is prunekit_cli.main


def test_key_value_options_name_a_bad_item(capsys, tmp_path):
    """--method-arg / --opt: an item without '=' or with a value that is not YAML is one line naming it."""
    base = ["prune", "--model", "lenet5", "--dataset", "digits", "--ratio", "0.3", "--out", str(tmp_path / "p")]
    assert "--method-arg 'every': expected KEY=VALUE" in one_line_error(capsys, base + ["--method-arg", "every"])
    err = one_line_error(capsys, base + ["--method-arg", "a=[1,"])
    assert "--method-arg 'a=[1,': the value is not valid YAML" in err
    assert "--opt '=3': expected KEY=VALUE" in one_line_error(capsys, ["bench", "redundancy", "--opt", "=3"])
    assert not (tmp_path / "p").exists()
