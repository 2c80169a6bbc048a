"""Distillation and regularisers, checked against the formulas."""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from prunekit.train import DistillationLoss, TrainConfig, Trainer, as_loss_term, bn_l1, group_lasso

from .toy import make_data, make_loader, make_model


def test_distillation_term_gives_the_hinton_total():
    torch.manual_seed(0)
    student, teacher = nn.Linear(5, 3), nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    kd = DistillationLoss(teacher, temperature=2.0, alpha=0.3)
    out = student(x).detach()
    ce = F.cross_entropy(out, y)
    total = (ce + kd(student, (x, y), out, ce)).detach()
    t = 2.0
    p_t = F.softmax(teacher(x) / t, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(out / t, dim=1))).sum(dim=1).mean()
    assert float(total) == pytest.approx(float(0.7 * ce + 0.3 * t * t * kl), rel=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())
    # a teacher identical to the student: KL is zero, the term only rescales the task loss
    same = DistillationLoss(copy.deepcopy(student), temperature=4.0, alpha=0.5)
    assert float(same(student, (x, y), out, ce)) == pytest.approx(float(-0.5 * ce), abs=1e-6)


def test_distillation_plugs_into_the_trainer():
    data = make_data()
    teacher = make_model(seed=5)
    Trainer(teacher, make_loader(data), config=TrainConfig(epochs=3, progress=False, verbose=False)).fit()
    student = make_model(seed=6)
    t = Trainer(student, make_loader(data), DataLoader(data, batch_size=256),
                TrainConfig(epochs=3, progress=False, verbose=False))
    t.add_loss_term(DistillationLoss(teacher, temperature=4.0, alpha=0.9))
    assert t.fit().final["top1"] > 0.8


def test_bn_l1_is_the_sum_of_absolute_gammas():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Linear(2, 2), nn.BatchNorm1d(2),
                          nn.BatchNorm1d(4, affine=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        model[3].weight.copy_(torch.tensor([-0.25, 4.0]))
    value = bn_l1(model, 0.1)
    assert value.item() == pytest.approx(0.1 * (1 + 2 + 0.5 + 0.25 + 4))
    value.backward()
    assert torch.equal(model[1].weight.grad, 0.1 * torch.tensor([1.0, -1.0, 1.0]))
    assert bn_l1(nn.Linear(2, 2), 1.0).item() == 0.0


def test_group_lasso_per_filter_and_per_channel_group():
    conv, lin = nn.Conv2d(1, 2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]]))  # norms 5, 2
        lin.weight.copy_(torch.tensor([[6.0, 8.0], [0.0, 0.0]]))                                  # norms 10, 0
    model = nn.Sequential(conv, nn.Flatten(), lin)
    assert group_lasso(model, 0.5).item() == pytest.approx(0.5 * (5 + 2 + 10 + 0))
    assert group_lasso(model, 1.0, groups=[conv]).item() == pytest.approx(7.0)
    group_lasso(model, 1.0).backward()  # a zero filter has a finite (zero) subgradient
    assert torch.isfinite(lin.weight.grad).all() and torch.equal(lin.weight.grad[1], torch.zeros(2))

    # a coupled channel group: channel c = filter c of conv ("0.weight", dim 0) + input column c of lin
    members = [SimpleNamespace(key="0.weight", dim=0, index=[[0], [1]]),
               SimpleNamespace(key="2.weight", dim=1, index=[[0], [1]]),
               SimpleNamespace(key="running_mean", dim=0, index=[[0], [1]])]  # not a parameter: ignored
    group = SimpleNamespace(size=2, members=members)
    expected = (25 + 36) ** 0.5 + (4 + 64) ** 0.5
    assert group_lasso(model, 1.0, groups=[group]).item() == pytest.approx(expected)


def test_regularizer_as_a_loss_term_shrinks_gammas():
    data = make_data()

    def gammas(strength):
        model = make_model()
        t = Trainer(model, make_loader(data), config=TrainConfig(epochs=2, lr=0.05, weight_decay=0.0, progress=False,
                                                                 verbose=False))
        if strength:
            t.add_loss_term(as_loss_term(bn_l1, strength))
        t.fit()
        return model[1].weight.abs().sum().item()

    assert gammas(1.0) < 0.5 * gammas(0.0)
