"""Each real on-disk format, written small by the test, read back exactly; corrupt files fail clearly."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunekit.data import DataFormatError, DataNotFoundError, get_dataset, read_idx
from prunekit.data import cifar, fashion_mnist

from .writers import FILES, idx_bytes, write_cifar, write_fmnist, write_tree


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    data = idx_bytes(arr)
    p = tmp_path / ("a.gz" if gz else "a")
    p.write_bytes(gzip.compress(data) if gz else data)
    t = read_idx(p, ndim=3)
    assert t.dtype == torch.uint8 and t.shape == (2, 3, 5)
    assert torch.equal(t, torch.from_numpy(arr))


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: b"\x08\x03" + d[2:], "bad IDX magic"),                 # wrong magic
    (lambda d: d[:-7], "truncated: shape [2, 3, 5] needs 30 data bytes, found 23"),
    (lambda d: d + b"\x00", "trailing bytes"),
    (lambda d: d[:9], "truncated IDX header"),
])
def test_idx_corrupt(tmp_path, corrupt, message):
    data = idx_bytes(np.zeros((2, 3, 5), np.uint8))
    p = tmp_path / "x"
    p.write_bytes(corrupt(data))
    with pytest.raises(DataFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    p = tmp_path / "x.gz"
    data = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip"):
        read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_back(tmp_path, gz):
    arrays = write_fmnist(tmp_path / "fm", gz=gz)
    train = get_dataset("fashion-mnist", data_dir=tmp_path / "fm", split="train", val_size=0)
    test = get_dataset("fashion-mnist", data_dir=tmp_path / "fm", split="test")
    assert (len(train), len(test)) == (40, 20)
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays[FILES[0]]))
    assert train.targets.tolist() == arrays[FILES[1]].tolist()
    assert test.targets.tolist() == arrays[FILES[3]].tolist()
    x, y = test[3]
    expected = (arrays[FILES[2]][3].astype(np.float32) / 255 - fashion_mnist.MEAN[0]) / fashion_mnist.STD[0]
    assert x.shape == (1, 28, 28) and y == int(arrays[FILES[3]][3])
    assert torch.allclose(x[0], torch.from_numpy(expected), atol=1e-5)


def test_fashion_mnist_corrupt_file_named(tmp_path):
    write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(19, np.uint8))))
    with pytest.raises(DataFormatError, match="20 test images but 19 labels"):
        get_dataset("fashion-mnist", data_dir=tmp_path, split="test")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        get_dataset("fashion-mnist", data_dir=tmp_path, split="train")


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    env, system, cache = tmp_path / "env", tmp_path / "system", tmp_path / "xdg"
    monkeypatch.setenv("PRUNEKIT_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [system])
    explicit = tmp_path / "explicit"
    # without --data-dir: cache < system < env, each one found wins over the ones after it
    write_fmnist(cache / "prunekit" / "fashion-mnist", n_train=11)
    assert len(get_dataset("fmnist", val_size=0)) == 11
    write_fmnist(system, n_train=12)
    assert len(get_dataset("fmnist", val_size=0)) == 12
    write_fmnist(env / "fashion-mnist", n_train=13)  # a sub-folder of $PRUNEKIT_DATA
    assert len(get_dataset("fmnist", val_size=0)) == 13
    # an explicit data_dir is the only place read: missing, it is an error even though three copies exist
    with pytest.raises(DataNotFoundError) as e:
        get_dataset("fmnist", data_dir=explicit, val_size=0)
    assert f"not found in --data-dir {explicit}: does not exist" in str(e.value)
    explicit.mkdir()
    write_fmnist(explicit, n_train=14, gz=False)
    (explicit / "t10k-labels-idx1-ubyte").unlink()  # incomplete: the missing file is named
    with pytest.raises(DataNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        get_dataset("fmnist", data_dir=explicit, val_size=0)
    write_fmnist(explicit, n_train=14, gz=False)
    assert len(get_dataset("fmnist", data_dir=explicit, val_size=0)) == 14


def test_fashion_mnist_not_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNEKIT_NO_DOWNLOAD", raising=False)
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [tmp_path / "system"])
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(fashion_mnist.urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFoundError) as e:
        get_dataset("fashion-mnist")
    msg = str(e.value)
    order = [str(tmp_path / "env"), str(tmp_path / "system"),
             str(tmp_path / "xdg" / "prunekit" / "fashion-mnist"), fashion_mnist.URL]
    positions = [msg.index(p) for p in order]
    assert positions == sorted(positions)
    assert "network unreachable" in msg and "--dataset digits" in msg
    assert calls == [fashion_mnist.URL + "train-images-idx3-ubyte.gz"]
    assert not list((tmp_path / "xdg" / "prunekit" / "fashion-mnist").glob("*"))  # no partial file kept
    monkeypatch.setenv("PRUNEKIT_NO_DOWNLOAD", "1")
    calls.clear()
    with pytest.raises(DataNotFoundError, match="download disabled"):
        get_dataset("fashion-mnist")
    # an explicit folder that lacks the files: an error naming it, no other place and no download tried
    monkeypatch.delenv("PRUNEKIT_NO_DOWNLOAD")
    with pytest.raises(DataNotFoundError, match=f"not found in --data-dir {tmp_path / 'mine'}"):
        get_dataset("fashion-mnist", data_dir=tmp_path / "mine")
    assert calls == []


def test_fashion_mnist_download_into_cache(tmp_path, monkeypatch):
    """The last resort fetches the four .gz files from the official address into the cache."""
    served = tmp_path / "server"
    write_fmnist(served, n_train=15)
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    monkeypatch.delenv("PRUNEKIT_NO_DOWNLOAD", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [])
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return open(served / url.rsplit("/", 1)[1], "rb")

    monkeypatch.setattr(fashion_mnist.urllib.request, "urlopen", fake_urlopen)
    assert len(get_dataset("fashion-mnist", val_size=0)) == 15
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(f + ".gz" for f in FILES)
    assert all(u.startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/") for u in urls)
    assert sorted(p.name for p in (tmp_path / "xdg/prunekit/fashion-mnist").iterdir()) == sorted(
        f + ".gz" for f in FILES)


def test_cifar_batches_read_back(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    train = get_dataset("cifar10", data_dir=tmp_path, split="train", val_size=0)  # finds the sub-folder
    test = get_dataset("cifar-10", data_dir=tmp_path, split="test")
    assert (len(train), len(test)) == (30, 5)
    data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(data.reshape(30, 3, 32, 32)))
    assert test.targets.tolist() == written["test_batch"][1]
    x, _ = test[0]
    r0 = written["test_batch"][0][0, :1024].reshape(32, 32).astype(np.float32) / 255  # red plane first
    assert torch.allclose(x[0], (torch.from_numpy(r0) - cifar.MEAN[0]) / cifar.STD[0], atol=1e-5)


def test_cifar_corrupt(tmp_path):
    write_cifar(tmp_path)
    data = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="test_batch: not a readable CIFAR-10 python batch"):
        get_dataset("cifar10", data_dir=tmp_path, split="test")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataFormatError, match=r"must be uint8 \[N, 3072\], found uint8 \[4, 100\]"):
        get_dataset("cifar10", data_dir=tmp_path, split="test")


def test_cifar_refuses_arbitrary_pickle_globals(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Path("x"), b"labels": []}, f)
    with pytest.raises(DataFormatError, match="is not allowed"):
        cifar.read_batch(tmp_path / "test_batch")


def test_cifar_missing_names_places(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        get_dataset("cifar10", data_dir=tmp_path)


def test_imagefolder_train_test_layout(tmp_path):
    write_tree(tmp_path / "train", {"cat": 3, "dog": 4})
    write_tree(tmp_path / "test", {"cat": 1, "dog": 2}, seed=1)
    train = get_dataset("imagefolder", data_dir=tmp_path, split="train", val_size=0)
    test = get_dataset("imagefolder", data_dir=tmp_path, split="test")
    assert (len(train), len(test)) == (7, 3)
    assert train.classes == ("cat", "dog") and train.targets.tolist() == [0, 0, 0, 1, 1, 1, 1]
    x, y = test[2]
    assert x.shape == (3, 10, 12) and y == 1
    png = np.asarray(Image.open(tmp_path / "test" / "dog" / "1.png"), dtype=np.float32) / 255
    assert torch.allclose(x, (torch.from_numpy(png).permute(2, 0, 1) - 0.5) / 0.5, atol=1e-5)
    resized = get_dataset("imagefolder", data_dir=tmp_path, split="test", image_size=16)
    assert resized[0][0].shape == (3, 16, 16)


def test_imagefolder_single_tree_and_bad_image(tmp_path):
    write_tree(tmp_path, {"a": 10, "b": 10, "c": 5})
    splits = {s: get_dataset("folder", data_dir=tmp_path, split=s, val_size=4) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 16, "val": 4, "test": 5}
    all_idx = torch.cat([d.indices for d in splits.values()])
    assert sorted(all_idx.tolist()) == list(range(25))  # disjoint and complete
    (tmp_path / "a" / "0.png").write_bytes(b"not a png")  # source index 0
    for d in splits.values():
        everything = list(range(len(d)))
        if 0 in d.indices.tolist():
            with pytest.raises(DataFormatError, match="a/0.png: unreadable image"):
                d.batch(everything)
        else:
            assert d.batch(everything)[0].shape == (len(d), 3, 10, 12)
