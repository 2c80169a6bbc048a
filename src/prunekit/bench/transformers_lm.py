"""The causal-LM part of `prunekit bench transformers`: a small Llama-style model with grouped-query attention,
trained here from scratch on the fortunes text, then pruned by magnitude / Wanda / SparseGPT (50% and 2:4)
and structured width pruning (each through `run_hf_workflow` on the saved model); perplexity on held-out
windows."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..data.text import load_tokenizer, token_windows
from ..transformers.hf_pretrained import PREFIX
from .config import BenchConfig
from .hf_runs import hf_run


def train_tokenizer(texts: list[str], vocab_size: int, folder: Path):
    """A byte-level BPE tokenizer trained on ``texts`` (tokenizers), saved in ``folder`` and reloaded through
    transformers so the model has its own tokenizer like any pretrained one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return load_tokenizer(folder)


def make_llama(vocab: int, opts: dict[str, Any], seed: int):
    """A Llama config with GQA (heads / kv heads from opts), biases on (FLAP's compensation needs them),
    eager attention."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=opts["lm_hidden"], intermediate_size=opts["lm_intermediate"],
        num_hidden_layers=opts["lm_layers"], num_attention_heads=opts["lm_heads"],
        num_key_value_heads=opts["lm_kv_heads"], max_position_embeddings=opts["seq_len"], mlp_bias=True,
        attention_bias=True, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    return transformers.LlamaForCausalLM(cfg)


def train_lm(model, windows: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int) -> dict[str, Any]:
    """Next-token training with AdamW and a cosine schedule (dropout-free model, seeded batches)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    losses = []
    for _ in range(steps):
        ids = windows[torch.randint(0, len(windows), (batch_size,), generator=gen)]
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return {"steps": steps, "seconds": time.perf_counter() - start, "first_loss": losses[0],
            "last_loss": sum(losses[-10:]) / len(losses[-10:])}


def run_lm(splits, opts: dict[str, Any], cfg: BenchConfig, workdir: Path, log) -> tuple[list[dict], dict[str, Any]]:
    """Train the small LM on `splits.train` (the training entries of the text every row's workflow reads, so
    its held-out windows stay unseen), save it as a transformers folder, then prune it every way, each one
    `run_hf_workflow`; rows of the perplexity table and run details."""
    seed = cfg.seeds[0]
    folder = workdir / "llama-gqa"
    tok = train_tokenizer(splits.train, opts["lm_vocab"], folder)
    train_w = token_windows(tok, splits.train, opts["seq_len"])
    dense = make_llama(len(tok), opts, seed)
    info = {"tokenizer_vocab": len(tok), "train_windows": len(train_w),
            "params": sum(p.numel() for p in dense.parameters()),
            "train": train_lm(dense, train_w, opts["lm_steps"], opts["lm_batch"], opts["lm_lr"], seed)}
    log(f"lm trained: {info['train']}")
    dense.save_pretrained(str(folder))  # safetensors weights next to the tokenizer: an hf:<folder> model
    model = PREFIX + str(folder)
    rows: list[dict[str, Any]] = []
    for pattern in ("50%", "2:4"):
        for method in ("magnitude", "wanda", "sparsegpt"):
            res = hf_run(model, method, {"nm": "2:4"} if pattern == "2:4" else {"sparsity": 0.5}, opts, cfg)
            if not rows:
                info["heldout_entries"] = res.report["data"]["heldout"]
                rows.append({"model": "llama-gqa", "method": "dense", "pattern": "-",
                             "ppl": res.before["perplexity"], "ppl_ratio": 1.0, "sparsity": 0.0, "seconds": 0.0})
            ppl = res.after["perplexity"]
            rows.append({"model": "llama-gqa", "method": method, "pattern": pattern, "ppl": ppl,
                         "ppl_ratio": ppl / res.before["perplexity"], "sparsity": res.method.extras["sparsity"],
                         "seconds": res.timings["prune"]})
            log(f"lm {method} {pattern}: ppl {ppl:.2f}")
    for importance in ("fluctuation", "magnitude"):
        res = hf_run(model, "flap", {"ratio": opts["lm_structured_ratio"], "importance": importance}, opts, cfg)
        rep = res.method.extras["report"]
        ppl = res.after["perplexity"]
        rows.append({"model": "llama-gqa", "method": f"structured ({importance})",
                     "pattern": f"{opts['lm_structured_ratio']:.0%} width",
                     "ppl": ppl, "ppl_ratio": ppl / res.before["perplexity"],
                     "sparsity": rep["removed_params"] / rep["prunable_params"],
                     "params_kept": rep["params_after"] / rep["params_before"], "seconds": res.timings["prune"],
                     "groups": rep["groups"]})
        log(f"lm structured {importance}: ppl {ppl:.2f}")
    return rows, info


__all__ = ["make_llama", "run_lm", "train_lm", "train_tokenizer"]
