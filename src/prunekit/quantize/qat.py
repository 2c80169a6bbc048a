"""Quantization-aware fine-tuning: fake-quant int8 on every Conv/Linear weight and input, distilled from a teacher.

Weights get a per-channel symmetric int8 fake-quant (torch.nn.utils.parametrize), layer inputs a per-tensor
uint8 one with moving-average ranges (forward pre-hooks); both pass gradients straight through. BatchNorm stays
unfolded during training (running statistics frozen): folding multiplies each output channel by a positive or
negative constant, which a per-channel symmetric int8 grid absorbs exactly, so the fake-quant sees the grid
the folded weights get. After training
the fake-quant is removed, leaving float weights that have learned to sit well on the int8 grid; the static
calibration that follows (onnxruntime, same scheme) then produces the deployed int8 model.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..train.evaluation import split_batch
from ..train.losses import DistillationLoss
from ..utils.inputs import call_model
from .config import QuantizeConfig, QuantizeError

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class QATReport:
    """steps: optimizer steps run. losses: mean loss per epoch. layers: how many layers were fake-quantized."""

    steps: int = 0
    losses: list[float] = field(default_factory=list)
    layers: int = 0


class _WeightFakeQuant(nn.Module):
    def __init__(self, out_axis: int) -> None:
        super().__init__()
        from torchao.quantization.pt2e import FakeQuantize, MovingAveragePerChannelMinMaxObserver
        self.fq = FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                               dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=out_axis)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.fq(weight)


def _activation_fake_quant() -> nn.Module:
    from torchao.quantization.pt2e import FakeQuantize, MovingAverageMinMaxObserver
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8,
                        qscheme=torch.per_tensor_affine)


def _attach(model: nn.Module) -> tuple[list, list[nn.Module]]:
    hooks, layers = [], []
    for module in model.modules():
        if not isinstance(module, _LAYERS) or parametrize.is_parametrized(module, "weight"):
            continue
        axis = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
        parametrize.register_parametrization(module, "weight", _WeightFakeQuant(axis))
        fq = _activation_fake_quant()
        object.__setattr__(module, "_prunekit_input_fq", fq)  # kept out of the state_dict on purpose
        hooks.append(module.register_forward_pre_hook(
            lambda mod, args: (mod._prunekit_input_fq(args[0]),) + tuple(args[1:])))
        layers.append(module)
    return hooks, layers


def _detach(hooks: list, layers: list[nn.Module]) -> None:
    for h in hooks:
        h.remove()
    for module in layers:
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        object.__delattr__(module, "_prunekit_input_fq")


def qat_finetune(model: nn.Module, loader: Iterable, config: QuantizeConfig, teacher: nn.Module | None = None,
                 ) -> QATReport:
    """Fine-tune ``model`` in place with int8 fake-quant for ``config.qat_epochs`` epochs.

    Args:
        model: the float (pruned) model; its BatchNorm layers train their affine parameters with frozen
            running statistics (they are folded into the convolutions afterwards).
        loader: labelled training batches, (inputs, targets).
        config: qat_epochs, qat_steps, qat_lr, distill, temperature, alpha, seed.
        teacher: the float model to distil from (the dense model when given; else a frozen copy of ``model``).

    Returns:
        QATReport.
    """
    import copy

    layers_present = any(isinstance(m, _LAYERS) for m in model.modules())
    if not layers_present:
        raise QuantizeError("QAT: the model has no Conv or Linear layer to quantize")
    torch.manual_seed(config.seed)
    kd = None
    if config.distill:
        # a copy: DistillationLoss freezes its teacher, which must not change the caller's model
        kd = DistillationLoss(copy.deepcopy(teacher if teacher is not None else model), config.temperature,
                              config.alpha)
    hooks, layers = _attach(model)
    report = QATReport(layers=len(layers))
    params = [p.requires_grad_(True) for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=config.qat_lr, momentum=0.9)
    model.train()
    for module in model.modules():  # frozen running statistics: the ones folded into the convolutions later
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        for _ in range(config.qat_epochs):
            total, n = 0.0, 0
            batches = loader if config.qat_steps is None else itertools.islice(loader, config.qat_steps)
            for batch in batches:
                inputs, targets = split_batch(batch)
                logits = call_model(model, inputs)
                loss = nn.functional.cross_entropy(logits, targets)
                if kd is not None:
                    with torch.no_grad():
                        teacher_logits = call_model(kd.teacher, inputs)
                    loss = (1 - kd.alpha) * loss + kd.alpha * kd.kd_loss(logits, teacher_logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + loss.item(), n + 1
                report.steps += 1
            report.losses.append(total / max(n, 1))
    finally:
        _detach(hooks, layers)
        model.eval()
    return report
