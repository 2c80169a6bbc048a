"""The compressed file: exact round trip, sizes, atomic writes, corrupt and truncated files."""
import hashlib
import os
import zlib

import pytest
import torch
from torch import nn

from prunekit.compress import (
    HEADER_SIZE, MAGIC, CompressedFileError, is_compressed, load_compressed, read_compressed, save_compressed,
    plain_state_dict, share_weights,
)
from prunekit.unstructured import prune_unstructured


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 10))


def _compressed_net() -> nn.Module:
    torch.manual_seed(0)
    model = _net()
    model(torch.randn(4, 1, 8, 8))           # non-trivial BN running stats
    prune_unstructured(model, {"conv": 0.5, "linear": 0.9}, scope="layer")
    share_weights(model, {"conv": 8, "linear": 4})
    return model.eval()


def test_roundtrip_bit_exact(tmp_path):
    model = _compressed_net()
    x = torch.randn(16, 1, 8, 8)
    ref = model(x)
    info = save_compressed(model, tmp_path / "m.pkz", meta={"note": "test"})
    assert info.encodings["4.weight"] == "shared" and info.encodings["1.running_mean"] == "raw"
    assert info.file_bytes == os.path.getsize(tmp_path / "m.pkz")
    assert info.ratio > 5
    loaded = load_compressed(tmp_path / "m.pkz", model=_net())
    assert not loaded.training
    assert torch.equal(loaded(x), ref)
    plain = plain_state_dict(model)
    for k, v in loaded.state_dict().items():
        same = v.view(torch.int32) if v.dtype == torch.float32 else v
        assert torch.equal(same, plain[k].view(torch.int32) if v.dtype == torch.float32 else plain[k]), k
    cf = read_compressed(tmp_path / "m.pkz")
    assert cf.meta == {"note": "test"} and cf.description is None
    assert int(cf.state_dict["1.num_batches_tracked"]) == 1


def test_any_float_tensor_is_stored_losslessly(tmp_path):
    torch.manual_seed(1)
    w = torch.randn(40, 30)
    w[w.abs() < 0.5] = 0.0
    w[0, :3] = -0.0                       # signed zeros and odd values survive bit for bit
    w[1, :2] = torch.tensor([float("inf"), 1e-45])
    sd_model = nn.Linear(30, 40)
    with torch.no_grad():
        sd_model.weight.copy_(w)
    save_compressed(sd_model, tmp_path / "a.pkz")
    back = read_compressed(tmp_path / "a.pkz").state_dict["weight"]
    assert torch.equal(back.view(torch.int32), w.view(torch.int32))
    half = nn.Linear(8, 4).half()
    save_compressed(half, tmp_path / "h.pkz")
    assert torch.equal(read_compressed(tmp_path / "h.pkz").state_dict["weight"], half.weight.detach())


def test_refuses_overwrite_and_writes_atomically(tmp_path):
    model = _compressed_net()
    path = tmp_path / "m.pkz"
    save_compressed(model, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_compressed(model, path)
    assert path.read_bytes() == before
    save_compressed(model, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pkz"]     # no temporary left behind


def test_rejects_flipped_byte_truncation_and_foreign_files(tmp_path):
    path = tmp_path / "m.pkz"
    save_compressed(_compressed_net(), path)
    data = path.read_bytes()
    assert is_compressed(path) and data.startswith(MAGIC)
    for pos in (HEADER_SIZE + 5, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        (tmp_path / "bad.pkz").write_bytes(bytes(bad))
        with pytest.raises(CompressedFileError, match="checksum"):
            load_compressed(tmp_path / "bad.pkz", model=_net())
    for n in (len(data) - 1, len(data) // 2, HEADER_SIZE - 3, 3):
        (tmp_path / "short.pkz").write_bytes(data[:n])
        with pytest.raises(CompressedFileError, match="truncated"):
            read_compressed(tmp_path / "short.pkz")
    (tmp_path / "long.pkz").write_bytes(data + b"\0")
    with pytest.raises(CompressedFileError, match="trailing"):
        read_compressed(tmp_path / "long.pkz")
    (tmp_path / "other.bin").write_bytes(b"PK\x03\x04" + bytes(100))
    assert not is_compressed(tmp_path / "other.bin")
    with pytest.raises(CompressedFileError, match="not a prunekit"):
        read_compressed(tmp_path / "other.bin")


def test_valid_checksum_but_inconsistent_header_is_caught(tmp_path):
    path = tmp_path / "m.pkz"
    save_compressed(_compressed_net(), path)
    data = bytearray(path.read_bytes())
    js_len = int.from_bytes(data[12:16], "little")
    js = zlib.decompress(bytes(data[HEADER_SIZE:HEADER_SIZE + js_len]))
    js = zlib.compress(js.replace(b'"nnz":', b'"nnz":9', 1))
    body = bytes(data[HEADER_SIZE + js_len:])
    header = bytearray(data[:HEADER_SIZE])
    header[12:16] = len(js).to_bytes(4, "little")
    header[24:56] = hashlib.sha256(js + body).digest()
    path.write_bytes(bytes(header) + js + body)
    with pytest.raises(CompressedFileError, match="tensor"):
        read_compressed(path)


def test_description_rebuilds_through_registry(tmp_path, monkeypatch):
    from prunekit.models import registry

    def tiny(a: int, **kw) -> nn.Module:
        assert a == 1
        return _net()

    monkeypatch.setattr(registry, "_REGISTRY", registry._REGISTRY.copy())
    registry.register_model("tiny", input_size=8)(tiny)
    model = _compressed_net()
    save_compressed(model, tmp_path / "m.pkz", description={"name": "tiny", "kwargs": {"a": 1}})
    loaded = load_compressed(tmp_path / "m.pkz")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    save_compressed(model, tmp_path / "n.pkz")
    with pytest.raises(ValueError, match="no model description"):
        load_compressed(tmp_path / "n.pkz")


def test_written_file_has_umask_permissions(tmp_path):
    save_compressed(_compressed_net(), tmp_path / "m.pkz")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.pkz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_fixed_headers_version_and_flags_are_checked(tmp_path):
    """Version and flags lie outside the checksum: version 0 loaded silently, and a flipped flag bit was called
    "version 1 ... newer than this prunekit reads (1)"."""
    path = tmp_path / "m.pkz"
    save_compressed(_compressed_net(), path)
    data = path.read_bytes()

    def patched(offset: int, value: int) -> bytes:
        bad = bytearray(data)
        bad[offset:offset + 2] = value.to_bytes(2, "little")
        return bytes(bad)

    cases = [(patched(8, 0), "corrupt file (format version 0; versions start at 1)"),
             (patched(8, 2), "format version 2, newer than this prunekit reads (1): written by a newer prunekit, "
                             "or its fixed header is damaged"),
             (patched(10, 0x11), "unknown flag bits 0x10 in format version 1: written by a newer prunekit, or "
                                 "its fixed header is damaged")]
    for raw, message in cases:
        (tmp_path / "bad.pkz").write_bytes(raw)
        with pytest.raises(CompressedFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_compressed(tmp_path / "bad.pkz")
    # a version field that agrees with no checksummed byte: the JSON header repeats the version
    js_len = int.from_bytes(data[12:16], "little")
    js = zlib.compress(zlib.decompress(data[HEADER_SIZE:HEADER_SIZE + js_len]).replace(b'"version":1', b'"version":7'))
    body = data[HEADER_SIZE + js_len:]
    header = bytearray(data[:HEADER_SIZE])
    header[12:16] = len(js).to_bytes(4, "little")
    header[24:56] = hashlib.sha256(js + body).digest()
    (tmp_path / "bad.pkz").write_bytes(bytes(header) + js + body)
    with pytest.raises(CompressedFileError, match="fixed header says format version 1, the checksummed JSON header 7"):
        read_compressed(tmp_path / "bad.pkz")
    assert read_compressed(path).state_dict  # the intact file still reads
