"""Extra loss terms for ``Trainer.add_loss_term``: knowledge distillation, and regularisers as terms.

A loss term is ``fn(model, batch, outputs, loss) -> Tensor``: ``batch`` is ``(inputs, targets)`` on the
training device, ``outputs`` the student's logits and ``loss`` the task loss (cross-entropy); the returned
scalar is added to the loss before the backward pass.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.inputs import call_model

LossTerm = Callable[[nn.Module, Any, torch.Tensor, torch.Tensor], torch.Tensor]


class DistillationLoss:
    """Hinton distillation: total = (1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T).

    As a loss term it returns ``alpha * (T^2 * KL - task loss)``, so adding it to the task loss gives the total
    above. The teacher runs in eval mode without gradients, on the student's device.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.5) -> None:
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError("temperature must be > 0 and alpha in [0, 1]")
        self.teacher, self.temperature, self.alpha = teacher.eval(), float(temperature), float(alpha)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def kd_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
        t = self.temperature
        log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
        return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t

    def __call__(self, model: nn.Module, batch: Any, outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch["input"]
        device = outputs.device
        if next(self.teacher.parameters(), torch.empty(0, device=device)).device != device:
            self.teacher.to(device)
        self.teacher.eval()
        with torch.no_grad():
            teacher_logits = call_model(self.teacher, inputs)
        return self.alpha * (self.kd_loss(outputs, teacher_logits) - loss)


def as_loss_term(regularizer: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> LossTerm:
    """Turn ``regularizer(model, *args, **kwargs)`` (e.g. ``bn_l1``, ``group_lasso``) into a loss term."""

    def term(model: nn.Module, batch: Any, outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return regularizer(model, *args, **kwargs)

    term.__name__ = getattr(regularizer, "__name__", "regularizer")
    return term
