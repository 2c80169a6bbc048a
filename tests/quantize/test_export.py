"""pk.export / `prunekit export`: ONNX with a dynamic batch that onnxruntime runs like PyTorch, for a pruned CNN,
a pruned transformer and a pruned model loaded from a Deep Compression file; and its refusals."""
import copy

import numpy as np
import pytest
import torch

import prunekit as pk
from prunekit.compress import save_compressed, share_weights
from prunekit.models import create
from prunekit.quantize import QuantizeError, export
from prunekit.quantize.runtime import session
from prunekit.unstructured import prune_unstructured

pytestmark = pytest.mark.usefixtures("single_thread")


def _pruned_cnn():
    model = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
    x = torch.randn(2, 1, 28, 28)
    return pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.5)), x


def test_pruned_cnn_matches_at_two_batch_sizes(tmp_path):
    pruned, x = _pruned_cnn()
    pruned.train()
    res = export(pruned, x, tmp_path / "p.onnx", latency_batches=(1, 4), runs=3)
    assert pruned.training                                    # exported in eval mode, the caller's mode restored
    assert res.passed and res.max_abs_diff < 1e-4
    assert res.checked_batches == [2, 4] and sorted(res.latency_ms) == [1, 4]
    assert res.size_bytes == (tmp_path / "p.onnx").stat().st_size
    sess = session(res.path)
    assert sess.get_inputs()[0].shape[0] == "batch"          # the batch dimension is symbolic
    out = sess.run(None, {"input_0": torch.randn(7, 1, 28, 28).numpy()})[0]
    assert out.shape == (7, 10)


def _tiny_bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16)
    return BertModel(cfg).eval()


class _Positional(torch.nn.Module):
    """A Hugging Face encoder called with positional (input_ids, attention_mask), returning the hidden states."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def test_pruned_transformer_matches(tmp_path):
    model = _Positional(_tiny_bert()).eval()
    x = (torch.randint(0, 64, (2, 8)), torch.ones(2, 8, dtype=torch.long))
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.5, criterion="l1"))
    assert pruned.encoder.encoder.layer[0].intermediate.dense.out_features == 32
    res = export(pruned, x, tmp_path / "bert.onnx", latency_batches=())
    assert res.passed and res.max_abs_diff < 1e-4
    assert res.input_names == ["input_0", "input_1"]


@pytest.mark.heavy  # the torch.export-based exporter takes ~30 s on a shared 2-core machine
def test_pruned_transformer_with_keyword_inputs_matches(tmp_path):
    model = _tiny_bert()
    x = {"input_ids": torch.randint(0, 64, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.5, criterion="l1"))
    res = export(pruned, x, tmp_path / "bert.onnx", latency_batches=())     # TorchScript refuses these kwargs
    assert res.passed and res.max_abs_diff < 1e-4
    assert res.input_names == ["input_ids", "attention_mask"]


def test_deep_compression_loaded_model_matches(tmp_path):
    model = create("lenet5", num_classes=10, in_channels=1).eval()
    prune_unstructured(model, {"conv": 0.5, "linear": 0.9}, scope="layer")
    share_weights(model, {"conv": 6, "linear": 4})
    save_compressed(model, tmp_path / "m.pkz")
    loaded = pk.load(tmp_path / "m.pkz")
    res = export(loaded, torch.randn(3, 1, 28, 28), tmp_path / "m.onnx", latency_batches=())
    assert res.passed and res.max_abs_diff < 1e-4


def test_cli_export_of_compressed_file(tmp_path, capsys):
    from prunekit.cli import main
    model = create("lenet5", num_classes=10, in_channels=1).eval()
    prune_unstructured(model, 0.8, scope="layer")
    save_compressed(model, tmp_path / "m.pkz")
    out = tmp_path / "m.onnx"
    argv = ["export", str(tmp_path / "m.pkz"), "--out", str(out), "--input-shape", "1,28,28", "--runs", "2",
            "--batches", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "max |PyTorch - onnxruntime|" in text and "onnxruntime latency, batch 1" in text
    assert main(argv) == 2
    assert f"--out {out} exists; pass overwrite=True (--overwrite) to replace it" in capsys.readouterr().err  # before any work
    assert main(argv + ["--overwrite", "--atol", "0"]) in (0, 1)      # 0 only if bit-identical
    assert main(["export", str(tmp_path / "m.pkz"), "--out", str(tmp_path / "n.onnx")]) == 2
    assert "records no input shape; pass --input-shape C,H,W" in capsys.readouterr().err
    data = bytearray((tmp_path / "m.pkz").read_bytes())
    data[200] ^= 0xFF
    (tmp_path / "bad.pkz").write_bytes(bytes(data))
    assert main(["export", str(tmp_path / "bad.pkz"), "--out", str(tmp_path / "b.onnx"),
                 "--input-shape", "1,28,28"]) == 2
    assert "bad.pkz: checksum mismatch, the file is corrupted" in capsys.readouterr().err
    assert not (tmp_path / "b.onnx").exists()


def test_refuses_overwrite_and_mismatched_inputs(tmp_path):
    pruned, x = _pruned_cnn()
    path = tmp_path / "p.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="p.onnx exists; pass overwrite=True"):
        export(pruned, x, path)
    assert path.read_bytes() == b"keep me"
    with pytest.raises(QuantizeError, match="the model does not run on the example inputs: RuntimeError"):
        export(pruned, torch.randn(2, 3, 28, 28), tmp_path / "q.onnx")     # 3 channels into a 1-channel net
    with pytest.raises(QuantizeError, match="example_inputs must hold a batched tensor"):
        export(pruned, [1, 2], tmp_path / "q.onnx")
    with pytest.raises(QuantizeError, match=r"atol=-1: must be a number >= 0"):
        export(pruned, x, tmp_path / "q.onnx", atol=-1)
    assert not (tmp_path / "q.onnx").exists()


def test_tolerance_failure_and_corrupt_files(tmp_path):
    pruned, x = _pruned_cnn()
    res = export(pruned, x, tmp_path / "p.onnx", atol=0.0, strict=False, latency_batches=())
    assert res.passed == (res.max_abs_diff == 0.0)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx graph")
    with pytest.raises(QuantizeError, match="bad.onnx is not a valid ONNX model for onnxruntime"):
        session(bad)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        session(tmp_path / "missing.onnx")
    sess = session(res.path)
    from prunekit.quantize.runtime import feed
    with pytest.raises(QuantizeError, match=r"input 'input_0' has shape \(2, 1, 14, 14\); the ONNX model wants"):
        feed(sess, torch.randn(2, 1, 14, 14))
    assert np.isfinite(res.max_abs_diff)


def test_pk_export_is_the_library_form(tmp_path):
    pruned, x = _pruned_cnn()
    res = pk.export(pruned, x, tmp_path / "p.onnx", latency_batches=())
    assert res.passed and res.to_dict()["passed"] is True
