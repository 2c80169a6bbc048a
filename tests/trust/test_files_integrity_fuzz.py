"""Every file prunekit writes is checked on load: a changed byte anywhere or a truncation raises one error type
(ModelFileError for models, checkpoints and containers, PlanFormatError for plans) that names the file."""
import json
import random

import pytest
import torch

import prunekit as pk
from prunekit import io as pk_io
from prunekit.compress import save_compressed
from prunekit.train.checkpoint import FORMAT, atomic_torch_save, load_checkpoint

from .files_helpers import X, pruned_lenet

N_POSITIONS = 50
WHITESPACE = b" \t\r\n"


def _positions(size: int, header: int = 64) -> list[int]:
    """Byte positions spread over the whole file, plus the first `header` bytes densely."""
    spread = [round(i * (size - 1) / (N_POSITIONS - 1)) for i in range(N_POSITIONS)]
    return sorted(set(spread) | set(range(min(header, size))))


def _changed(data: bytes, pos: int, rng: random.Random) -> bytes:
    """`data` with byte `pos` replaced: inverted at even positions, a random other non-whitespace value at odd ones
    (whitespace for whitespace between JSON tokens is the one change that does not alter the content)."""
    b = bytearray(data)
    if pos % 2 == 0:
        b[pos] ^= 0xFF
    else:
        b[pos] = rng.choice([v for v in range(256) if v != data[pos] and v not in WHITESPACE])
    return bytes(b)


def _fuzz(tmp_path, data: bytes, suffix: str, load, error: type, truncate_to: int | None = None) -> int:
    """Load every corrupted and truncated copy; each must raise `error` naming the file. Returns the count."""
    rng = random.Random(0)
    bad = tmp_path / f"bad{suffix}"
    cases = [_changed(data, p, rng) for p in _positions(len(data))]
    end = len(data) if truncate_to is None else truncate_to
    cases += [data[:round(i * (end - 1) / (N_POSITIONS - 1))] for i in range(N_POSITIONS)]
    for case in cases:
        bad.write_bytes(case)
        with pytest.raises(error) as err:
            load(bad)
        assert str(bad) in str(err.value)
    return len(cases)


def test_safetensors_model_files(tmp_path):
    _, p, _ = pruned_lenet()
    path = pk.save(p, tmp_path / "m.safetensors")
    assert torch.equal(pk.load(path)(X), p(X))
    assert _fuzz(tmp_path, path.read_bytes(), ".safetensors", pk.load, pk.ModelFileError) >= 2 * N_POSITIONS


def test_a_changed_weight_is_caught_even_when_the_file_still_parses(tmp_path):
    _, p, _ = pruned_lenet()
    path = pk.save(p, tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # the exponent byte region of the last float32: a weight changes by orders of magnitude
    path.write_bytes(bytes(data))
    with pytest.raises(pk.ModelFileError, match="checksum mismatch, the file is corrupted"):
        pk.load(path)


def test_training_checkpoints(tmp_path):
    _, p, _ = pruned_lenet()
    path = atomic_torch_save({"format": FORMAT, "model": p.state_dict(), "epoch": 3, "history": [{"loss": 0.5}]},
                             tmp_path / "last.pt")
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["conv1.weight"], p.conv1.weight)
    assert torch.load(path, weights_only=True)["epoch"] == 3  # still an ordinary torch file
    assert _fuzz(tmp_path, path.read_bytes(), ".pt", load_checkpoint, pk.ModelFileError) >= 2 * N_POSITIONS


def test_plan_json_files(tmp_path):
    _, _, plan = pruned_lenet()
    path = plan.save(tmp_path / "plan.json")
    assert pk.PruningPlan.load(path).removals() == plan.removals()
    data = path.read_bytes()
    assert data.endswith(b"}\n")
    # cutting only the final newline leaves the same JSON: truncations stop before it
    assert _fuzz(tmp_path, data, ".json", pk.PruningPlan.load, pk.PlanFormatError,
                 truncate_to=len(data) - 1) >= 2 * N_POSITIONS
    bad = tmp_path / "bad.json"
    bad.write_bytes(data[:-40])
    with pytest.raises(pk.PlanFormatError, match=f"^{bad}: plan is not valid JSON"):
        pk.PruningPlan.load(bad)


def test_compressed_containers(tmp_path):
    _, p, _ = pruned_lenet()
    path = tmp_path / "m.pkz"
    save_compressed(p, path)
    assert torch.equal(pk.load(path)(X), p(X))
    assert _fuzz(tmp_path, path.read_bytes(), ".pkz", pk.load, pk.ModelFileError) >= 2 * N_POSITIONS


def test_random_bytes_after_the_right_magic_are_called_corrupt(tmp_path):
    from prunekit.compress.container import MAGIC

    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(400))
    for name, head in (("x.pkz", MAGIC), ("x.pt", b"PK\x03\x04"), ("x.safetensors", (200).to_bytes(8, "little"))):
        f = tmp_path / name
        f.write_bytes(head + noise)
        load = load_checkpoint if name.endswith(".pt") else pk.load
        with pytest.raises(pk.ModelFileError, match="corrupt") as err:
            load(f)
        assert str(f) in str(err.value) and "version" not in str(err.value).split("corrupt")[0]


def test_files_from_before_checksums(tmp_path):
    """Decision (docs/trust.md): a model file without a checksum loads only when the caller says so."""
    from safetensors.torch import save_file

    _, p, _ = pruned_lenet()
    desc = pk_io.describe(p)
    desc["version"] = 1
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in p.state_dict().items()}, str(old),
              metadata={pk_io.DESC_KEY: json.dumps(desc)})
    with pytest.raises(pk.ModelFileError, match="written before prunekit stored checksums.*allow_unverified=True"):
        pk.load(old)
    assert torch.equal(pk.load(old, allow_unverified=True)(X), p(X))
    # a current file whose checksum entry is gone is corrupt, not old
    desc["version"] = pk_io.FORMAT_VERSION
    stripped = tmp_path / "stripped.safetensors"
    save_file({k: v.contiguous() for k, v in p.state_dict().items()}, str(stripped),
              metadata={pk_io.DESC_KEY: json.dumps(desc)})
    with pytest.raises(pk.ModelFileError, match="checksum is missing: corrupt"):
        pk.load(stripped, allow_unverified=True)
    plain = tmp_path / "plain.pt"
    torch.save({"format": FORMAT, "epoch": 1}, plain)
    with pytest.raises(pk.ModelFileError, match="no prunekit checksum"):
        load_checkpoint(plain)


def test_malformed_descriptions_name_the_file_and_the_problem(tmp_path):
    from safetensors.torch import save_file

    cases = {"not json": ("{nope", "not valid JSON"), "list": ("[1]", "not a JSON object"),
             "format": (json.dumps({"format": "x", "version": 2}), "format is 'x'"),
             "version": (json.dumps({"format": pk_io.FORMAT, "version": 34340}), "unsupported description version 34340"),
             "plans": (json.dumps({"format": pk_io.FORMAT, "version": 2, "arch": None, "plans": [{"groups": 3}]}),
                       "plan 1 of 1 is malformed: plan field groups must be a list")}
    for i, (text, message) in enumerate(cases.values()):
        f = tmp_path / f"{i}.safetensors"
        t = {"w": torch.zeros(2)}
        save_file(t, str(f), metadata={pk_io.DESC_KEY: text, pk_io.CHECKSUM_KEY: pk_io._digest(text, t)})
        with pytest.raises(pk.ModelFileError, match=message) as err:
            pk.load(f)
        assert str(f) in str(err.value)
