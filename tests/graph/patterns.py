"""Small models with the hard coupling patterns: every one must trace, prune, run and verify."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SEBlock(nn.Module):
    """Conv -> BN -> ReLU, then a squeeze-excitation gate multiplied back onto the channels."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.head((x * g).flatten(2).sum(-1))


class ShuffleNetLike(nn.Module):
    """Grouped 1x1 conv, channel shuffle (view/transpose/view), depthwise conv, split + concat."""

    def __init__(self, c=24, groups=3):
        super().__init__()
        self.groups = groups
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.g1 = nn.Conv2d(c, c, 1, groups=groups)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.b2 = nn.Conv2d(c // 2, c // 2, 1)
        self.head = nn.Linear(c, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.g1(x)
        b, c, h, w = y.shape
        y = y.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = self.dw(y)
        a, z = y.chunk(2, dim=1)
        y = torch.cat([a, F.relu(self.b2(z))], 1)
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


class DenseNetLike(nn.Module):
    """Dense connectivity: every layer sees the concatenation of all earlier outputs."""

    def __init__(self, c=8, growth=6, n=3):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.layers = nn.ModuleList()
        ch = c
        for _ in range(n):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, growth, 3, padding=1)))
            ch += growth
        self.head = nn.Linear(ch, 3)

    def forward(self, x):
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return self.head(torch.cat(feats, 1).mean((2, 3)))


class UNetLike(nn.Module):
    """Encoder/decoder with a skip concat, max-pool, bilinear upsampling and a transposed conv."""

    def __init__(self, c=8):
        super().__init__()
        self.e1 = nn.Conv2d(3, c, 3, padding=1)
        self.e2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.mid = nn.Conv2d(2 * c, 2 * c, 1)
        self.d1 = nn.Conv2d(3 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(F.max_pool2d(a, 2)))
        u = self.up(b)
        m = F.interpolate(self.mid(b), scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(F.relu(self.d1(torch.cat([u + a, m], 1))))


class GroupedNet(nn.Module):
    """Grouped convs and a depthwise conv with channel multiplier 2, plus padding of channels."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.g = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(32, 64, 3, padding=1, groups=32)
        self.pw = nn.Conv2d(64, 16, 1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.g(x))
        x = F.relu(self.dw(x))
        return self.head(self.pw(x).mean((2, 3)))


class MixerBlock(nn.Module):
    def __init__(self, tokens, dim, hidden=32):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.tok = nn.Sequential(nn.Linear(tokens, hidden), nn.GELU(), nn.Linear(hidden, tokens))
        self.n2 = nn.LayerNorm(dim)
        self.ch = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.tok(self.n1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ch(self.n2(x))


class MLPMixer(nn.Module):
    """Patch embedding, token-mixing MLPs over the transposed sequence, channel-mixing MLPs."""

    def __init__(self, dim=16, patch=4, size=16):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        tokens = (size // patch) ** 2
        self.blocks = nn.Sequential(MixerBlock(tokens, dim), MixerBlock(tokens, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


class TransformerNet(nn.Module):
    """Token embedding + nn.TransformerEncoder (nn.MultiheadAttention inside) + classifier."""

    def __init__(self, vocab=50, dim=32, heads=4, layers=2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 3)

    def forward(self, tokens):
        return self.head(self.enc(self.emb(tokens)).mean(1))


class SDPAttention(nn.Module):
    """Hand-written attention with separate q/k/v projections, head split by view and SDPA."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, scale=0.25)
        return self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class SDPANet(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.inp = nn.Linear(8, dim)
        self.att = SDPAttention(dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        h = F.relu(self.inp(x))
        return self.head((h + self.att(h)).mean(1))


class HFStyleAttention(nn.Module):
    """Attention written the way many hub models are: head count and sizes as attributes, explicit
    matmul + softmax with the 1/sqrt(head size) scale, permute/view to split and merge heads."""

    def __init__(self, dim=24, heads=3):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, dim // heads
        self.all_head_size = heads * self.attention_head_size
        self.query, self.key, self.value = (nn.Linear(dim, self.all_head_size) for _ in range(3))
        self.dense = nn.Linear(self.all_head_size, dim)

    def split(self, x):
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / self.attention_head_size ** 0.5, dim=-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(*x.shape[:-1], self.all_head_size)
        return self.dense(y)


class HFStyleNet(nn.Module):
    def __init__(self, dim=24):
        super().__init__()
        self.inp = nn.Linear(6, dim)
        self.att = HFStyleAttention(dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.head((h + self.att(h)).mean(1))


class Conv1dNet(nn.Module):
    """Conv1d over sequences with BatchNorm1d, a residual and global pooling."""

    def __init__(self, c=16):
        super().__init__()
        self.c1 = nn.Conv1d(4, c, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(c)
        self.c2 = nn.Conv1d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(c)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        a = F.relu(self.bn1(self.c1(x)))
        return self.head(F.relu(a + self.bn2(self.c2(a))).amax(-1))


class EmbeddingBagNet(nn.Module):
    """Embedding -> mean over tokens -> MLP: the embedding dim is prunable, the vocabulary is not."""

    def __init__(self, vocab=40, dim=24):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, tokens):
        return self.out(F.relu(self.fc(self.emb(tokens).sum(1))))


class FlattenNet(nn.Module):
    """Conv features flattened into a linear layer: one channel owns H*W columns of the linear weight."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x):
        return self.out(F.relu(self.fc(F.relu(self.c(x)).flatten(1))))


def _img(c=3, s=16, n=2):
    return torch.randn(n, c, s, s)


PATTERNS = {
    "se_gate": (SEBlock, lambda: _img()),
    "channel_shuffle": (ShuffleNetLike, lambda: _img()),
    "dense_concat": (DenseNetLike, lambda: _img()),
    "unet": (UNetLike, lambda: _img()),
    "grouped_depthwise": (GroupedNet, lambda: _img()),
    "mlp_mixer": (MLPMixer, lambda: _img()),
    "transformer_mha": (TransformerNet, lambda: torch.randint(0, 50, (2, 7))),
    "sdpa_heads": (SDPANet, lambda: torch.randn(2, 5, 8)),
    "conv1d_seq": (Conv1dNet, lambda: torch.randn(2, 4, 20)),
    "embedding": (EmbeddingBagNet, lambda: torch.randint(0, 40, (2, 6))),
    "flatten_linear": (FlattenNet, lambda: torch.randn(2, 1, 8, 8)),
}

# patterns whose pruned channels pass through a channel-mixing normalisation or attention scaling
APPROXIMATE = {"mlp_mixer", "transformer_mha"}
