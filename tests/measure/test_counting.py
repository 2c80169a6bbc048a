"""MAC and parameter counts against hand-computed numbers."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.measure import Counts, count, count_macs, count_params


def conv_macs(h_out: int, w_out: int, c_out: int, c_in: int, k: int, groups: int = 1) -> int:
    """One multiply-accumulate per output element per weight it reads: H*W*Cout*(Cin/groups)*k*k."""
    return h_out * w_out * c_out * (c_in // groups) * k * k


def conv_params(c_out: int, c_in: int, k: int, bias: bool = True) -> int:
    return c_out * c_in * k * k + (c_out if bias else 0)


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (3 stages x 3 blocks, widths 16/32/64, 1x1 conv shortcuts when the shape changes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for c_out, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                blocks.append(Block(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def lenet5_hand_counts() -> tuple[int, int]:
    """(params, MACs) of LeNet-5 on one 1x28x28 image, layer by layer."""
    # conv1: 1->6, 5x5, pad 2, on 28x28 -> 6 x 28x28 ; pool -> 14x14
    # conv2: 6->16, 5x5, no pad, on 14x14 -> 16 x 10x10 ; pool -> 5x5 -> 400 features
    macs = (28 * 28 * 6 * 1 * 5 * 5      # conv1 = 117,600
            + 10 * 10 * 16 * 6 * 5 * 5   # conv2 = 240,000
            + 400 * 120                  # fc1   =  48,000
            + 120 * 84                   # fc2   =  10,080
            + 84 * 10)                   # fc3   =     840
    params = (6 * 1 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    return params, macs


def test_lenet5_matches_hand_count():
    params, macs = lenet5_hand_counts()
    assert macs == 416_520 and params == 61_706
    counts = count(LeNet5(), torch.randn(1, 1, 28, 28))
    assert counts.macs == macs
    assert counts.params == params
    assert counts.macs_by_op == {"convolution": 117_600 + 240_000, "addmm": 48_000 + 10_080 + 840}
    # MACs scale with the batch; parameters do not.
    assert count(LeNet5(), torch.randn(3, 1, 28, 28)).macs == 3 * macs


def resnet20_hand_counts() -> tuple[int, int]:
    """(params, MACs) of CIFAR ResNet-20 (projection shortcuts) on one 3x32x32 image, layer by layer."""
    macs = conv_macs(32, 32, 16, 3, 3)                      # stem
    params = conv_params(16, 3, 3, bias=False) + 2 * 16     # stem conv + bn
    for c_in, c_out, hw in [(16, 16, 32), (16, 32, 16), (32, 64, 8)]:
        for i in range(3):
            cin = c_in if i == 0 else c_out
            macs += conv_macs(hw, hw, c_out, cin, 3) + conv_macs(hw, hw, c_out, c_out, 3)
            params += conv_params(c_out, cin, 3, False) + conv_params(c_out, c_out, 3, False) + 2 * 2 * c_out
            if i == 0 and cin != c_out:                      # 1x1 projection shortcut + bn
                macs += conv_macs(hw, hw, c_out, cin, 1)
                params += conv_params(c_out, cin, 1, False) + 2 * c_out
    macs += 64 * 10
    params += 64 * 10 + 10
    return params, macs


def test_resnet20_matches_hand_count():
    params, macs = resnet20_hand_counts()
    assert macs == 40_813_184
    model = ResNet20()
    counts = count(model, torch.randn(1, 3, 32, 32))
    assert (counts.params, counts.macs) == (params, macs)
    params_, macs_ = counts  # unpacks like a pair
    assert (params_, macs_) == (params, macs)
    assert counts.params == sum(p.numel() for p in model.parameters())


def test_zoo_models_match_hand_counts():
    from prunekit.models import create

    assert tuple(count(create("lenet5", num_classes=10, in_channels=1), torch.randn(1, 1, 28, 28))) == \
        lenet5_hand_counts()
    assert tuple(count(create("resnet20", num_classes=10, in_channels=3), torch.randn(1, 3, 32, 32))) == \
        resnet20_hand_counts()


def test_count_leaves_model_state_alone():
    model = ResNet20().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count(model, torch.randn(2, 3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_grouped_depthwise_and_transposed_convs():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
    up = nn.ConvTranspose2d(8, 4, 2, stride=2, bias=False)
    x = torch.randn(1, 8, 10, 10)
    assert count_macs(dw, x) == conv_macs(10, 10, 8, 8, 3, groups=8) == 7_200
    assert count_macs(grouped, x) == conv_macs(10, 10, 16, 8, 3, groups=4) == 28_800
    # transposed: every input element is scattered through Cout*k*k weights
    assert count_macs(up, x) == 10 * 10 * 8 * 4 * 2 * 2


def test_matmul_bmm_einsum_and_linear_on_3d_inputs():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(16, 32)

        def forward(self, a, b):
            y = self.proj(a)                                 # (2, 5, 16) -> (2, 5, 32): 2*5*16*32
            z = torch.matmul(y, b)                           # (2, 5, 32) @ (2, 32, 7): 2*5*32*7
            w = torch.einsum("bij,bjk->bik", z, z.transpose(1, 2))  # (2,5,7)@(2,7,5): 2*5*7*5
            v = torch.mv(w[0], torch.ones(5))               # 5*5
            return w, v, torch.dot(v, v)                     # 5

    a, b = torch.randn(2, 5, 16), torch.randn(2, 32, 7)
    assert count_macs(M(), (a, b)) == 2 * 5 * 16 * 32 + 2 * 5 * 32 * 7 + 2 * 5 * 7 * 5 + 25 + 5


def test_attention_counted_on_every_path():
    b, h, s, d = 2, 4, 8, 16

    class SDPA(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q = torch.randn(b, h, s, d)
    assert count_macs(SDPA(), (q, q, q)) == 2 * b * h * s * s * d  # Q K^T and P V

    e, heads, length = 16, 4, 5
    mha = nn.MultiheadAttention(e, heads, batch_first=True)
    x = torch.randn(2, length, e)
    expected = 4 * (2 * length) * e * e + 2 * 2 * heads * length * length * (e // heads)
    assert count_macs(mha, (x, x, x)) == expected
    for p in mha.parameters():  # frozen weights let torch take the fused fast path: still counted
        p.requires_grad_(False)
    assert count_macs(mha, (x, x, x)) == expected

    layer = nn.TransformerEncoderLayer(e, heads, dim_feedforward=32, batch_first=True)
    ffn = 2 * length * (e * 32 + 32 * e)
    assert count_macs(layer, x) == expected + ffn
    for p in layer.parameters():
        p.requires_grad_(False)
    assert count_macs(layer, x) == expected + ffn


def test_dict_inputs_and_shared_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.out = nn.Linear(8, 50, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, ids, scale=1.0):
            return self.out(self.emb(ids) * scale)

    counts = count(Tied(), {"ids": torch.randint(0, 50, (3, 4)), "scale": 2.0})
    assert counts.params == 50 * 8                 # the tied matrix once
    assert counts.macs == 3 * 4 * 8 * 50          # the embedding lookup is not a MAC


def test_nonzero_params_and_count_params():
    lin = nn.Linear(10, 4)
    with torch.no_grad():
        lin.weight[:2].zero_()
        lin.bias.fill_(1.0)
    c = count(lin, torch.randn(1, 10))
    assert isinstance(c, Counts)
    assert (c.params, c.nonzero_params) == (44, 24)
    assert count_params(lin, nonzero=True) == 24


@pytest.mark.parametrize("cls, kw", [
    (nn.LSTM, dict(num_layers=2)),                      # oneDNN's fused LSTM layer on CPU
    (nn.LSTM, dict(num_layers=2, bidirectional=True)),
    (nn.LSTM, dict(num_layers=1, batch_first=True)),
    (nn.LSTM, dict(num_layers=2, proj_size=16)),         # no oneDNN path: lowers to mm / addmm
    (nn.GRU, dict(num_layers=2)),
    (nn.RNN, dict(num_layers=1)),
])
def test_recurrent_layers_count_every_time_step(cls, kw):
    """MACs = time steps x batch x (every W_ih and W_hh element), whichever kernel torch runs."""
    torch.manual_seed(0)
    m = cls(8, 32, **kw)
    x = torch.randn(3, 5, 8) if kw.get("batch_first") else torch.randn(5, 3, 8)
    want = 15 * sum(p.numel() for n, p in m.named_parameters() if n.startswith("weight_"))
    assert count(m, (x,)).macs == want
