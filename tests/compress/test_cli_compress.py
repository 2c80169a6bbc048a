"""`prunekit compress` / `prunekit decompress` and pk.load on a compressed file (real registry model)."""
import torch

import prunekit as pk
from prunekit.cli import main
from prunekit.compress import load_compressed, read_compressed, save_compressed, share_weights
from prunekit.models import create
from prunekit.unstructured import prune_unstructured


def test_registry_model_roundtrip_and_pk_load(tmp_path):
    torch.manual_seed(0)
    model = create("lenet5", num_classes=10, in_channels=1)
    prune_unstructured(model, {"conv": 0.5, "linear": 0.9}, scope="layer")
    share_weights(model, {"conv": 6, "linear": 4})
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    ref = model(x)
    save_compressed(model, tmp_path / "m.pkz")
    assert read_compressed(tmp_path / "m.pkz").description["name"] == "lenet5"
    assert torch.equal(load_compressed(tmp_path / "m.pkz")(x), ref)
    assert torch.equal(pk.load(tmp_path / "m.pkz")(x), ref)


def test_cli_compress_and_decompress(tmp_path, capsys):
    torch.manual_seed(0)
    model = create("lenet300", num_classes=10, in_channels=1, width=0.5)
    pk.save(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.pkz"
    assert main(["compress", str(tmp_path / "m.safetensors"), "-o", str(out), "--sparsity", "0.9",
                 "--bits-linear", "4"]) == 0
    assert "Huffman" in capsys.readouterr().out
    loaded = load_compressed(out)
    w = loaded.fc1.weight
    assert abs(float((w == 0).float().mean()) - 0.9) < 1e-3 and torch.unique(w[w != 0]).numel() <= 16
    assert main(["compress", str(tmp_path / "m.safetensors"), "-o", str(out)]) == 2     # exists
    assert main(["decompress", str(out), "-o", str(tmp_path / "dense")]) == 0
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(pk.load(tmp_path / "dense" / "model.safetensors")(x), loaded(x))
    bad = bytearray(out.read_bytes())
    bad[-3] ^= 1
    (tmp_path / "bad.pkz").write_bytes(bytes(bad))
    assert main(["decompress", str(tmp_path / "bad.pkz")]) == 2
    assert "checksum" in capsys.readouterr().err
