"""Recurrent nets: the hidden units of nn.LSTM, nn.GRU and nn.RNN are channels (rnn.py); pruning them is exact."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import prunekit as pk


class Classifier(nn.Module):
    def __init__(self, cell: str, layers: int, bidirectional: bool, proj_size: int = 0) -> None:
        super().__init__()
        kw = {"proj_size": proj_size} if proj_size else {}
        self.rnn = getattr(nn, cell)(12, 32, num_layers=layers, bidirectional=bidirectional, batch_first=True, **kw)
        self.fc = nn.Linear((2 if bidirectional else 1) * (proj_size or 32), 5)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _prune(model, inputs, ratio=0.25):
    plan = pk.plan(model, inputs, ratio=ratio)
    pruned = pk.apply(copy.deepcopy(model), plan)
    return plan, pruned, pk.verify(model, pruned, plan, inputs)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_classifier_hidden_units_prune_exactly(cell, layers, bidirectional):
    torch.manual_seed(0)
    model, x = Classifier(cell, layers, bidirectional).eval(), torch.randn(3, 7, 12)
    plan, pruned, report = _prune(model, x)
    assert plan.summary() == {"rnn": {"size": 32, "kept": 24}}  # one hidden size for every layer and direction
    rnn, gates = pruned.rnn, {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    dirs = 2 if bidirectional else 1
    assert rnn.hidden_size == 24 and rnn.weight_hh_l0.shape == (gates * 24, 24)
    assert pruned.fc.in_features == dirs * 24
    if layers == 2:
        assert rnn.weight_ih_l1.shape == (gates * 24, dirs * 24) and rnn.weight_ih_l1_reverse.shape[1] == 48
    assert plan.exact and report.exact and report.max_rel_diff < 1e-5 and not report.weak, report
    assert pruned(x).shape == (3, 5)


def test_lstm_projection_prunes_both_widths():
    torch.manual_seed(0)
    model, x = Classifier("LSTM", 2, True, proj_size=8).eval(), torch.randn(3, 7, 12)
    plan, pruned, report = _prune(model, x)
    assert plan.summary() == {"rnn": {"size": 32, "kept": 24}, "rnn#1": {"size": 8, "kept": 6}}
    assert (pruned.rnn.hidden_size, pruned.rnn.proj_size) == (24, 6)
    assert pruned.rnn.weight_hr_l1_reverse.shape == (6, 24) and pruned.rnn.weight_ih_l1.shape == (96, 12)
    assert report.exact and report.max_rel_diff < 1e-5


class Seq2Seq(nn.Module):
    """A GRU encoder whose final state starts a GRU decoder: the two share their hidden units."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.enc = nn.GRU(8, 16, num_layers=2, batch_first=True)
        self.dec = nn.GRU(8, 16, num_layers=2, batch_first=True)
        self.out = nn.Linear(16, 20)

    def forward(self, src, tgt):
        _, h = self.enc(self.emb(src))
        y, _ = self.dec(self.emb(tgt), h)
        return self.out(y)


def test_seq2seq_encoder_state_couples_the_decoder():
    torch.manual_seed(0)
    model = Seq2Seq().eval()
    inputs = (torch.randint(0, 20, (2, 5)), torch.randint(0, 20, (2, 4)))
    plan, pruned, report = _prune(model, inputs)
    assert plan.summary() == {"emb": {"size": 8, "kept": 6}, "enc (+1)": {"size": 16, "kept": 12}}
    assert pruned.enc.hidden_size == pruned.dec.hidden_size == 12 and pruned.dec.input_size == 6
    assert report.exact and report.max_rel_diff < 1e-5 and not report.weak
    assert pruned(*inputs).shape == (2, 4, 20)


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 16, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, 3)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        y, _ = pad_packed_sequence(out, batch_first=True)
        return self.fc(y.sum(1))


def test_packed_sequences_prune_exactly():
    torch.manual_seed(0)
    model, inputs = Packed().eval(), (torch.randn(3, 5, 6), torch.tensor([5, 3, 2]))
    plan, pruned, report = _prune(model, inputs)
    assert plan.summary() == {"rnn": {"size": 16, "kept": 12}}
    assert pruned.fc.in_features == 24 and report.exact and report.max_rel_diff < 1e-5


class CellLoop(nn.Module):
    """An LSTMCell stepped over time by Python code, its state fed back: the units close a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(6, 20)
        self.gru = nn.GRUCell(20, 10)
        self.fc = nn.Linear(10, 2)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)  # widths read from the modules: apply updates them
        g = x.new_zeros(x.shape[0], self.gru.hidden_size)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            g = self.gru(h, g)
        return self.fc(g)


def test_cells_stepped_in_python_prune_exactly():
    torch.manual_seed(0)
    model, x = CellLoop().eval(), torch.randn(3, 4, 6)
    # the same loop with its state widths written as literals cannot shrink: the probe excludes it, with why
    assert "inconsistent hidden_size" in pk.trace(LiteralWidths().eval(), x).group("cell").reason
    plan, pruned, report = _prune(model, x)
    assert plan.summary() == {"cell": {"size": 20, "kept": 15}, "gru": {"size": 10, "kept": 8}}
    assert (pruned.cell.hidden_size, pruned.gru.input_size, pruned.gru.hidden_size) == (15, 15, 8)
    assert report.exact and report.max_rel_diff < 1e-5 and not report.weak


class LiteralWidths(CellLoop):
    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], 20)
        g = x.new_zeros(x.shape[0], 10)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            g = self.gru(h, g)
        return self.fc(g)

