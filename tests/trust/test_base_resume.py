"""A cached base whose training was stopped continues from its last epoch, to the same weights."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from prunekit.bench import common, redundancy
from prunekit.bench.config import make_config
from prunekit.train import Trainer
from prunekit.workflow import DataConfig, load_data, train_base
from prunekit.workflow import base as base_mod

pytestmark = pytest.mark.usefixtures("single_thread")

KW = {"num_classes": 10, "in_channels": 1, "width": 0.25}
DESC = {"dataset": "digits", "test": "resume"}


class Stopped(Exception):
    pass


def _train(cache, lines, **over):
    data = load_data(DataConfig("digits", batch_size=64, subset=400), seed=2)
    kw = dict(epochs=3, lr=0.05, seed=2, cache_dir=str(cache), max_steps=4, progress=False, log=lines.append)
    return train_base("resnet20", KW, data.loaders, DESC, **{**kw, **over})


def test_an_interrupted_base_training_continues_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    whole, info = _train(tmp_path / "a", [])
    assert info["cached"] is False and "resumed_at_epoch" not in info

    class StopAfterTwo(Trainer):  # the session ends after epoch 2's checkpoint was written
        def _checkpoint(self, best):
            super()._checkpoint(best)
            if self.epoch == 2:
                raise Stopped

    monkeypatch.setattr(base_mod, "Trainer", StopAfterTwo)
    with pytest.raises(Stopped):
        _train(tmp_path / "b", [])
    (entry,) = (tmp_path / "b").iterdir()
    assert (entry / "partial" / "last.pt").is_file() and not (entry / "model.pt").exists()
    monkeypatch.setattr(base_mod, "Trainer", Trainer)
    lines: list[str] = []
    resumed, info = _train(tmp_path / "b", lines)
    assert info["resumed_at_epoch"] == 2 and len(info["history"]) == 3
    assert any("continuing the interrupted training" in line for line in lines)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit the uninterrupted run's weights
    assert not (entry / "partial").exists() and (entry / "model.pt").is_file()
    again, info = _train(tmp_path / "b", [])
    assert info["cached"] is True and all(torch.equal(a[k], v) for k, v in again.state_dict().items())


def test_without_the_cache_nothing_is_written(tmp_path):
    _train(tmp_path / "c", [], use_cache=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("damage", ["weights", "record", "not an object"])
def test_a_damaged_cache_entry_is_refused_with_the_way_out(tmp_path, damage):
    """A flipped byte in the cached model.pt (or a broken base.json) failed every later run with a bare
    "checksum mismatch"; the error now names the entry and how to retrain, and nothing is replaced silently."""
    _train(tmp_path / "d", [])
    (entry,) = (tmp_path / "d").iterdir()
    if damage == "weights":
        raw = bytearray((entry / "model.pt").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (entry / "model.pt").write_bytes(bytes(raw))
    else:
        (entry / "base.json").write_text("{broken" if damage == "record" else "[8, 0.1]")
    before = {p.name: p.read_bytes() for p in entry.iterdir()}
    with pytest.raises(ValueError, match=f"the cached base {entry} is damaged: delete that folder"):
        _train(tmp_path / "d", [])
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == before
    fresh, info = _train(tmp_path / "d", [], use_cache=False)  # the documented way round it
    assert info["cached"] is False


def _committed_copy(tmp_path):
    """A trained entry moved out of the cache into a read-only 'committed' folder (benchmarks/bases/ alike)."""
    _train(tmp_path / "e", [])
    (entry,) = (tmp_path / "e").iterdir()
    committed = tmp_path / "committed"
    committed.mkdir()
    return entry.rename(committed / entry.name), committed


def test_a_committed_base_is_read_in_place_when_the_cache_has_none(tmp_path):
    entry, committed = _committed_copy(tmp_path)
    files = {p.name: p.read_bytes() for p in entry.iterdir()}
    lines: list[str] = []
    model, info = _train(tmp_path / "empty", lines, committed=[committed])
    assert info["cached"] is True and info["source"] == str(entry)
    assert any(f"reusing {entry}" in line for line in lines)
    saved = torch.load(entry / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert not (tmp_path / "empty").exists()  # nothing copied or written into the cache
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == files  # the committed entry is left untouched
    # a cache entry of the same key wins over the committed one
    _train(tmp_path / "own", [])
    _, info = _train(tmp_path / "own", [], committed=[committed])
    assert info["source"].startswith(str(tmp_path / "own"))


@pytest.mark.parametrize("damage", ["weights", "settings"])
def test_a_damaged_or_mismatched_committed_base_is_refused(tmp_path, damage):
    entry, committed = _committed_copy(tmp_path)
    if damage == "weights":
        raw = bytearray((entry / "model.pt").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (entry / "model.pt").write_bytes(bytes(raw))
        match = f"the committed base {entry} is damaged: restore it from the repository"
    else:  # a record that names other settings than the folder's key stands for
        rec = json.loads((entry / "base.json").read_text())
        (entry / "base.json").write_text(json.dumps({**rec, "epochs": 9, "lr": 0.5}))
        match = r"records other settings \(epochs, lr\) than the base asked for; restore it"
    with pytest.raises(ValueError, match=match):
        _train(tmp_path / "empty", [], committed=[committed])
    assert not (tmp_path / "empty").exists()


def test_the_committed_vgg11_base_is_the_one_the_full_suites_ask_for(tmp_path):
    """benchmarks/bases/vgg11-* is found by the --full suites' key (model, data, 8 epochs, lr 0.1, seed 0)."""
    cfg = make_config("redundancy", False, redundancy.PRESETS, full=True, cache_dir=str(tmp_path / "cache"))
    data = common.Data(info=SimpleNamespace(num_classes=10, in_channels=1), train_ds=None, test_loader=None,
                       batch_size=cfg.batch_size)
    data.train_loader = lambda seed: None  # the base is read, not trained: no data is drawn
    model, info = common.get_base(cfg, data, "vgg11", 1.0)
    assert info["source"] == str(common.COMMITTED_BASES / "vgg11-1a8356807da4dd6d")
    assert (info["epochs"], info["lr"], info["seed"]) == (8, 0.1, 0)
    assert sum(p.numel() for p in model.parameters()) == 9_227_210
    assert not (tmp_path / "cache").exists()
