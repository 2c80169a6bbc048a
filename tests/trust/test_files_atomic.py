"""One atomic writer for every output: whole files or none, the user's umask, no overwrite unless asked."""
import os
import stat

import pytest
import torch

import prunekit as pk
from prunekit.compress import save_compressed
from prunekit.train.checkpoint import atomic_torch_save
from prunekit.utils.fileio import atomic_write

from .files_helpers import pruned_lenet


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_gives_0644_under_umask_022(tmp_path, umask_022):
    _, p, plan = pruned_lenet()
    files = [pk.save(p, tmp_path / "m.safetensors"), atomic_torch_save({"a": torch.ones(2)}, tmp_path / "c.pt"),
             plan.save(tmp_path / "plan.json"), atomic_write(tmp_path / "r.txt", "text"),
             atomic_write(tmp_path / "b.bin", b"\x00\x01")]
    save_compressed(p, tmp_path / "m.pkz")
    files.append(tmp_path / "m.pkz")
    assert [_mode(f) for f in files] == [0o644] * 6
    assert sorted(os.listdir(tmp_path)) == ["b.bin", "c.pt", "m.pkz", "m.safetensors", "plan.json", "r.txt"]


def test_umask_077_is_respected_too(tmp_path):
    old = os.umask(0o077)
    try:
        assert _mode(atomic_write(tmp_path / "x", "a")) == 0o600
    finally:
        os.umask(old)


def test_no_overwrite_unless_asked_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "f.txt", "first")
    with pytest.raises(FileExistsError, match="f.txt exists; pass overwrite=True"):
        atomic_write(path, "second")
    assert path.read_text() == "first"

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken, overwrite=True)
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["f.txt"]
    atomic_write(path, "second", overwrite=True)
    assert path.read_text() == "second"
    nested = atomic_write(tmp_path / "a" / "b" / "g.txt", "deep")
    assert nested.read_text() == "deep"


def test_a_file_created_meanwhile_is_not_replaced(tmp_path):
    path = tmp_path / "race.txt"

    def writer(tmp):
        path.write_text("someone else")  # appears while ours is being written
        tmp.write_text("ours")

    with pytest.raises(FileExistsError):
        atomic_write(path, writer)
    assert path.read_text() == "someone else" and os.listdir(tmp_path) == ["race.txt"]
