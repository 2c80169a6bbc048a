"""Atomic checkpoints, exact resume after an interruption, and refusing to overwrite foreign checkpoints."""
import os

import pytest
import torch
from torch.utils.data import DataLoader

from prunekit.train import TrainConfig, Trainer, atomic_torch_save, load_checkpoint

from .toy import make_data, make_loader, make_model


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, lr=0.05, warmup_epochs=0.5, seed=3, progress=False, verbose=False)
    return TrainConfig(**{**base, **kw})


class Interrupt(Exception):
    pass


def test_checkpoint_contents_and_no_temporary_files(tmp_path):
    data = make_data()
    t = Trainer(make_model(), make_loader(data), DataLoader(data, batch_size=64), cfg(), checkpoint_dir=tmp_path)
    t.fit()
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]
    state = load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "global_step", "rng", "history", "run_id"} <= set(state)
    assert (state["epoch"], state["global_step"], len(state["history"])) == (3, 24, 3)
    assert state["scheduler"]["last_epoch"] == 24
    assert all(torch.equal(v, t.module.state_dict()[k]) for k, v in state["model"].items())
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_top1"] == max(r["val_top1"] for r in best["history"])


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    data = make_data()
    full = Trainer(make_model(), make_loader(data), config=cfg())
    full.fit()

    first = Trainer(make_model(), make_loader(data), config=cfg(), checkpoint_dir=tmp_path)

    def crash(trainer, step):
        if step == 8 + 5:  # in the middle of epoch 2; the last checkpoint is from the end of epoch 1
            raise Interrupt

    first.add_step_callback(crash)
    with pytest.raises(Interrupt):
        first.fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1

    # a fresh process: new model object, new loader (its generator reset), state read back from disk
    resumed = Trainer(make_model(seed=99), make_loader(data, seed=123), config=cfg(), checkpoint_dir=tmp_path,
                      resume=True)
    assert (resumed.epoch, resumed.global_step) == (1, 8)
    result = resumed.fit()
    assert (result.epochs, result.steps) == (3, 24)
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed.history[1:]] == [r["train_loss"] for r in full.history[1:]]


def test_never_overwrites_a_checkpoint_this_run_did_not_write(tmp_path):
    data = make_data()
    user_file = tmp_path / "last.pt"
    user_file.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="resume=True"):
        Trainer(make_model(), make_loader(data), config=cfg(), checkpoint_dir=tmp_path)
    assert user_file.read_bytes() == b"precious"

    t = Trainer(make_model(), make_loader(data), config=cfg(epochs=1), checkpoint_dir=tmp_path, overwrite=True)
    t.fit()
    assert load_checkpoint(user_file)["epoch"] == 1

    # a file replaced by someone else while the run goes on is not clobbered either
    other = tmp_path / "other"
    t = Trainer(make_model(), make_loader(data), config=cfg(epochs=2), checkpoint_dir=other)

    def meddle(trainer, epoch, record):
        if epoch == 1:
            (other / "last.pt").write_bytes(b"someone else")

    t.add_epoch_callback(meddle)
    with pytest.raises(FileExistsError, match="not written by this run"):
        t.fit()
    assert (other / "last.pt").read_bytes() == b"someone else"
    with pytest.raises(FileExistsError):
        t.save_checkpoint(user_file)          # an arbitrary existing file is not ours either


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    data = make_data()
    t = Trainer(make_model(), make_loader(data), config=cfg(epochs=1), checkpoint_dir=tmp_path / "new",
                resume=True)
    assert t.epoch == 0
    t.fit()
    assert load_checkpoint(tmp_path / "new" / "last.pt")["epoch"] == 1


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ck.pt"]
    with pytest.raises(ValueError, match="not a prunekit"):
        load_checkpoint(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_sealed_checkpoint_holding_code_is_refused_naming_what_it_holds(tmp_path):
    """A checkpoint sealed with prunekit's own checksum but pickling os.system: refused before anything runs,
    with the global it names and without torch's advice to turn weights_only off."""
    from prunekit.train.checkpoint import read_checked
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    atomic_torch_save({"model": _RunsCode(marker)}, path)
    with pytest.raises(ValueError) as e:
        read_checked(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} holds pickled Python objects (posix.system)") and "unpickling can run code" in msg
    assert "weights_only" not in msg and "\x1b[" not in msg
    assert not marker.exists()
