"""Trainer: learning, schedule, hooks, reproducibility, evaluation."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.train import TrainConfig, Trainer, correct_topk, evaluate, lr_factor

from .toy import make_data, make_loader, make_model


@pytest.fixture
def data():
    return make_data()


def quiet(**kw) -> TrainConfig:
    return TrainConfig(progress=False, verbose=False, **kw)


def test_trainer_learns_a_separable_problem(data):
    val = DataLoader(data, batch_size=128)
    lines: list[str] = []
    trainer = Trainer(make_model(), make_loader(data), val, TrainConfig(epochs=4, lr=0.1, warmup_epochs=1),
                      log=lines.append)
    result = trainer.fit()
    assert result.epochs == 4 and result.steps == 4 * 8
    assert result.final["top1"] > 0.85 and result.final["count"] == 256        # chance is 0.25
    assert result.best_top1 == max(r["val_top1"] for r in result.history)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert len(lines) == 4 and lines[0].startswith("epoch 1/4")                  # one quiet line per epoch
    assert trainer.amp is False                                                 # AMP only on CUDA


def test_same_seed_gives_identical_weights_and_other_seed_does_not(data):
    def run(seed):
        t = Trainer(make_model(), make_loader(data), config=quiet(epochs=2, lr=0.05, seed=seed))
        t.fit()
        return t.module.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_lr_schedule_warmup_then_cosine_per_step(data):
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)                     # half-way through the cosine
    assert lr_factor(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(50, 100, 0, schedule="constant") == 1.0

    lrs: list[float] = []
    t = Trainer(make_model(), make_loader(data), config=quiet(epochs=2, lr=0.4, warmup_epochs=0.5))
    t.add_step_callback(lambda tr, step: lrs.append(tr.lr))
    t.fit()
    # 8 steps per epoch, 16 in all, 4 warm-up steps; lrs[i] is the rate for step i + 1
    expected = [0.4 * lr_factor(i + 1, 16, 4) for i in range(16)]
    assert lrs == pytest.approx(expected)
    assert lrs[2] == pytest.approx(0.4) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_optimizers_and_max_steps_per_epoch(data):
    steps: list[int] = []
    t = Trainer(make_model(), make_loader(data), config=quiet(epochs=3, optimizer="adamw", lr=1e-3,
                                                              max_steps_per_epoch=3))
    t.add_step_callback(lambda tr, step: steps.append(step))
    t.fit()
    assert isinstance(t.optimizer, torch.optim.AdamW)
    assert steps == list(range(1, 10))
    sgd = Trainer(make_model(), make_loader(data), config=quiet(momentum=0.8, nesterov=True))
    assert isinstance(sgd.optimizer, torch.optim.SGD)
    assert sgd.optimizer.param_groups[0]["momentum"] == 0.8 and sgd.optimizer.param_groups[0]["nesterov"]
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")


def test_loss_term_gradient_is_applied_exactly():
    # zero task-loss gradient, extra term k * sum(w): one SGD step moves every weight by exactly -lr * k
    lin = nn.Linear(3, 2)
    w0 = lin.weight.detach().clone()
    ds = TensorDataset(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    t = Trainer(lin, DataLoader(ds, batch_size=4), config=quiet(epochs=1, lr=0.5, momentum=0.0, weight_decay=0.0,
                                                               schedule="constant"),
                loss_fn=lambda out, y: 0.0 * out.sum())
    seen = []

    def term(model, batch, outputs, loss):
        seen.append((batch[0].shape, outputs.shape, float(loss.detach())))
        return 3.0 * model.weight.sum()

    t.add_loss_term(term)
    t.fit()
    assert seen == [(torch.Size([4, 3]), torch.Size([4, 2]), 0.0)]
    assert torch.allclose(lin.weight.detach(), w0 - 0.5 * 3.0)


def test_label_smoothing_and_grad_clip(data):
    t = Trainer(make_model(), make_loader(data), config=quiet(label_smoothing=0.2))
    logits, y = torch.randn(5, 4), torch.randint(0, 4, (5,))
    assert float(t.loss_fn(logits, y)) == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=0.2)))
    norms: list[float] = []
    t = Trainer(make_model(), make_loader(data), config=quiet(epochs=1, lr=1.0, grad_clip=0.01,
                                                              max_steps_per_epoch=2))

    def record(tr, step):  # gradients are still there after the step: their norm was clipped
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in tr.module.parameters() if p.grad is not None]))))

    t.add_step_callback(record)
    t.fit()
    assert len(norms) == 2 and all(n <= 0.01 + 1e-6 for n in norms)


def test_evaluate_top1_top5_loss_exact():
    # logits = inputs: build 10 samples over 6 classes whose target rank is known
    logits = torch.tensor([[6., 5, 4, 3, 2, 1]]).repeat(10, 1)
    targets = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 5, 5])  # ranks 1,1,1,2,3,4,5,6,6,6
    loader = DataLoader(TensorDataset(logits, targets), batch_size=3)
    metrics = evaluate(nn.Identity(), loader)
    assert metrics["top1"] == pytest.approx(3 / 10)
    assert metrics["top5"] == pytest.approx(7 / 10)
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-6)
    assert metrics["count"] == 10
    assert correct_topk(logits, targets, (1, 2, 5)) == [3, 4, 7]
    assert correct_topk(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), (5,)) == [4]  # k capped at 3 classes


def test_evaluate_restores_mode_and_dict_batches():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x)

    model = KW().train()
    batches = [{"input": {"x": torch.randn(4, 3)}, "target": torch.tensor([0, 1, 0, 1])}]
    m = evaluate(model, batches)
    assert model.training and m["count"] == 4 and 0.0 <= m["top1"] <= 1.0 and math.isfinite(m["loss"])


def test_dropout_model_is_put_back_in_train_mode_for_training(data):
    model = make_model().eval()
    modes = []
    t = Trainer(model, make_loader(data), DataLoader(data, batch_size=256), config=quiet(epochs=1,
                                                                                          max_steps_per_epoch=1))
    t.add_step_callback(lambda tr, step: modes.append(tr.model.training))
    t.fit()
    assert modes == [True]


def test_progress_bar_on_a_terminal_and_silent_otherwise(data, monkeypatch, capsys):
    t = Trainer(make_model(), make_loader(data), config=TrainConfig(epochs=1, max_steps_per_epoch=3, verbose=False))
    t.fit()
    assert capsys.readouterr().err == ""                     # not a terminal: no bar
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    ticks: list[int] = []
    from prunekit.train import trainer as trainer_module

    real = trainer_module._RichBar

    class Spy(real):
        def __enter__(self):
            advance = super().__enter__()
            return lambda loss: (ticks.append(1), advance(loss))

    monkeypatch.setattr(trainer_module, "_RichBar", Spy)
    t = Trainer(make_model(), make_loader(data), config=TrainConfig(epochs=2, max_steps_per_epoch=3, verbose=False))
    t.fit()
    assert len(ticks) == 6
    no_bar = Trainer(make_model(), make_loader(data), config=TrainConfig(epochs=1, max_steps_per_epoch=3,
                                                                         progress=False, verbose=False))
    no_bar.fit()
    assert len(ticks) == 6


def test_rebuild_optimizer_after_surgery_keeps_the_schedule(data):
    model = make_model()
    t = Trainer(model, make_loader(data), config=quiet(epochs=2, lr=0.2, warmup_epochs=0.0))
    lrs: list[float] = []

    def shrink(tr, epoch, record):  # after epoch 1, drop half of the hidden units (a physical surgery)
        if epoch != 1:
            return
        keep = torch.arange(16)
        lin1, bn, lin2 = tr.module[0], tr.module[1], tr.module[4]
        with torch.no_grad():
            lin1.weight = nn.Parameter(lin1.weight[keep].clone())
            lin1.bias = nn.Parameter(lin1.bias[keep].clone())
            bn.weight, bn.bias = nn.Parameter(bn.weight[keep].clone()), nn.Parameter(bn.bias[keep].clone())
            bn.running_mean, bn.running_var = bn.running_mean[keep].clone(), bn.running_var[keep].clone()
            lin2.weight = nn.Parameter(lin2.weight[:, keep].clone())
        lin1.out_features, bn.num_features, lin2.in_features = 16, 16, 16
        tr.rebuild_optimizer()
        lrs.append(tr.lr)

    t.add_epoch_callback(shrink)
    t.add_step_callback(lambda tr, step: lrs.append(tr.lr) if step == 9 else None)
    result = t.fit()
    assert result.steps == 16 and model[0].weight.shape == (16, 12)
    assert lrs[0] == pytest.approx(0.2 * lr_factor(8, 16, 0))        # where the schedule stood after 8 steps
    assert lrs[1] == pytest.approx(0.2 * lr_factor(9, 16, 0))
    assert all(p.shape == t.optimizer.state[p]["momentum_buffer"].shape for p in model.parameters())
