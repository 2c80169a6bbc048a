"""Every --opt key of a bench suite is one the suite reads; any other is refused before anything runs."""
from __future__ import annotations

import pytest

from prunekit.bench import suite_config
from prunekit.bench.speed import run as run_speed
from prunekit.cli import main


@pytest.mark.parametrize("suite,key", [("redundancy", "every"), ("speed", "bogus"), ("coarse", "rho"),
                                       ("admm", "evry"), ("quantize", "text_step"), ("compression", "sorce")])
def test_unknown_opt_keys_are_refused(suite, key):
    with pytest.raises(TypeError, match=f"suite {suite}: unknown --opt key\\(s\\) '{key}'; valid: "):
        suite_config(suite, True, opts={key: 1})


def test_known_opt_keys_are_taken():
    assert suite_config("coarse", True, opts={"every": 3}).opts["every"] == 3
    assert suite_config("speed", True, opts={"sources": ["x/redundancy"]}).opts["sources"] == ["x/redundancy"]
    assert suite_config("speed", False, opts={"section": 224, "round_to": 8}).opts["round_to"] == 8
    with pytest.raises(TypeError, match="valid: none \\(this suite takes no --opt\\)"):
        suite_config("redundancy", False, opts={"x": 1})


def test_the_narrow_speed_section_refuses_the_224_options(tmp_path):
    cfg = suite_config("speed", True, opts={"round_to": 8}, out=str(tmp_path / "s"))
    with pytest.raises(ValueError, match="round_to belong\\(s\\) to the 224-px section; add --opt section=224"):
        run_speed(cfg)
    assert not (tmp_path / "s").exists()


def test_the_command_line_names_the_key(tmp_path, capsys):
    assert main(["bench", "speed", "--quick", "--opt", "bogus=1", "--out", str(tmp_path / "o")]) != 0
    assert "unknown --opt key(s) 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
