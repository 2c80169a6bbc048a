"""Tiny randomly initialised transformers (BERT encoder, Llama decoder with GQA) and their inputs."""
# No __init__.py in this folder: a tests/transformers package would shadow the transformers library.
from __future__ import annotations

import torch


def tiny_bert(layers: int = 3, seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def tiny_llama(layers: int = 2, seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   mlp_bias=True)
    cfg._attn_implementation = "eager"
    return transformers.LlamaForCausalLM(cfg).eval()


def batches(n: int = 3, batch: int = 4, seq: int = 12, vocab: int = 64, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return out


class ResidualMLP(torch.nn.Module):
    """One pre-norm residual MLP block of a non-HF model."""

    def __init__(self, width: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.up, self.down = torch.nn.Linear(width, hidden), torch.nn.Linear(hidden, width)

    def forward(self, h):
        return h + self.down(torch.relu(self.up(self.norm(h))))


class MLPStack(torch.nn.Module):
    """A plain PyTorch model with a block list (no transformers code)."""

    def __init__(self, blocks: int = 3, seed: int = 0) -> None:
        torch.manual_seed(seed)
        super().__init__()
        self.inp = torch.nn.Linear(6, 8)
        self.blocks = torch.nn.ModuleList(ResidualMLP() for _ in range(blocks))
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)
