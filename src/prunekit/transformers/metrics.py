"""Quality and speed of pruned transformers against their dense original.

Encoders: cosine similarity between pruned and dense sentence embeddings (mean pooling over real tokens) on
held-out sentences, and the Spearman correlation between the two models' pairwise sentence similarities.
Causal LMs: perplexity on held-out token windows. Latency: CPU, batch 32 x sequence 64 by default, with the
models timed in alternation so that machine load hits all of them alike.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.measure.latency import time_callable


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where attention_mask is 1 (sentence-transformers' pooling)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def _last_hidden(out: Any) -> torch.Tensor:
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"cannot read the last hidden state from a {type(out).__name__}")


def sentence_embeddings(model: nn.Module, encodings: Mapping[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden states [sentences, hidden] of ``model`` on padded ``encodings``."""
    n = encodings["input_ids"].shape[0]
    device = next(model.parameters()).device
    out = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = {k: v[i:i + batch_size].to(device) for k, v in encodings.items()}
            out.append(mean_pool(_last_hidden(model(**batch)), batch["attention_mask"]).float().cpu())
    model.train(was)
    return torch.cat(out)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, float64; tied values share their mean rank."""
    x = x.detach().double().reshape(-1)
    order = x.argsort(stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0)
    mean_rank = (ends - counts + ends + 1).double() / 2  # mean of positions start+1 .. end
    ranks = torch.empty_like(x)
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally long vectors."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()).clamp_min(1e-300))


@dataclass
class EmbeddingAgreement:
    """How close pruned sentence embeddings stay to the dense ones."""

    mean_cosine: float
    min_cosine: float
    spearman: float  # of pairwise cosine similarities, pruned vs dense
    sentences: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embedding_agreement(dense: torch.Tensor, pruned: torch.Tensor) -> EmbeddingAgreement:
    """Per-sentence cosine between the two embedding sets, and the Spearman correlation of their pairwise
    similarity matrices (upper triangle)."""
    if dense.shape != pruned.shape:
        raise ValueError(f"embedding shapes differ: dense {tuple(dense.shape)}, pruned {tuple(pruned.shape)}")
    cos = F.cosine_similarity(dense.double(), pruned.double(), dim=1)
    iu = torch.triu_indices(len(dense), len(dense), offset=1)
    sim = lambda e: (F.normalize(e.double(), dim=1) @ F.normalize(e.double(), dim=1).T)[iu[0], iu[1]]  # noqa: E731
    rho = spearman(sim(dense), sim(pruned)) if len(dense) > 2 else float("nan")
    return EmbeddingAgreement(float(cos.mean()), float(cos.min()), rho, len(dense))


def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 16) -> float:
    """exp(mean next-token negative log-likelihood) of a causal LM over ``[n, seq]`` token windows."""
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    was = model.training
    model.eval()
    with torch.no_grad():
        for ids in windows.split(batch_size):
            ids = ids.to(device)
            out = model(input_ids=ids)
            logits = out.logits if hasattr(out, "logits") else _last_hidden(out)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1),
                                   reduction="sum")
            nll += float(loss)
            count += ids[:, 1:].numel()
    model.train(was)
    return float(torch.tensor(nll / max(count, 1)).exp())


def latency_inputs(tokenizer_or_vocab: Any, batch: int = 32, seq: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token inputs [batch, seq] (all real tokens) for timing; vocab from a tokenizer or an int."""
    vocab = tokenizer_or_vocab if isinstance(tokenizer_or_vocab, int) else len(tokenizer_or_vocab)
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def alternated_latency(models: Mapping[str, nn.Module], inputs: Mapping[str, torch.Tensor], rounds: int = 5,
                       runs: int = 5, warmup: int = 3, threads: int | None = None) -> dict[str, float]:
    """Median milliseconds per forward of each model, timed round-robin (``rounds`` x ``runs`` calls each
    after ``warmup``) on CPU under ``torch.inference_mode``; ``threads`` fixes torch's thread count."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    times: dict[str, list[float]] = {k: [] for k in models}
    try:
        with torch.inference_mode():
            for m in models.values():
                m.eval()
            for name, m in models.items():
                time_callable(lambda m=m: m(**inputs), warmup, 1)
            for _ in range(rounds):
                for name, m in models.items():
                    times[name] += time_callable(lambda m=m: m(**inputs), 0, runs)
    finally:
        torch.set_num_threads(previous)
    return {k: statistics.median(v) for k, v in times.items()}


__all__ = ["EmbeddingAgreement", "alternated_latency", "embedding_agreement", "latency_inputs", "mean_pool",
           "perplexity", "sentence_embeddings", "spearman"]
