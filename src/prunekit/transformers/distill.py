"""Recovery of a pruned transformer by distillation from its dense original (Minitron-style).

The student (pruned) learns the teacher's (dense) final hidden states (MSE over real tokens) or its logits
(KL divergence at a temperature) on text windows; optionally only LoRA adapters train (peft) and are merged
afterwards. Weight masks (unstructured / N:M) stay applied throughout and after merging. Dropout is off
(both models in eval mode) and batches are drawn by a seeded generator, so a run is reproducible.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import Config
from prunekit.surgery.masks import apply_masks, get_masks, remove_masks
from .calibration import find_blocks

LOSSES = ("hidden", "logits", "auto")


@dataclass
class DistillConfig(Config):
    """Options of distillation.

    Attributes:
        steps: optimizer steps (the run also stops after ``max_seconds`` when set).
        lr: AdamW learning rate.
        batch_size: windows per step.
        loss: "hidden" (MSE of final hidden states), "logits" (KL on the LM head's logits) or "auto" (logits
            when the model's output carries per-token logits, hidden states otherwise).
        temperature: softening of the logits loss.
        lora: train LoRA adapters (rank ``lora_rank``, ``lora_alpha``) on the block Linears instead of all
            weights, merged at the end.
        max_seconds: wall-clock budget (None: only ``steps`` counts).
        seed: batch sampling seed.
    """

    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 16
    loss: str = "hidden"
    temperature: float = 1.0
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: int = 16
    weight_decay: float = 0.0
    max_seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; valid: {', '.join(LOSSES)}")
        for k in ("steps", "batch_size", "lora_rank"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"lr and temperature must be positive, got {self.lr} and {self.temperature}")


@dataclass
class DistillReport:
    config: dict[str, Any]
    steps: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    trainable_params: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hidden(out: Any) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def distill_loss(student_out: Any, teacher_out: Any, mask: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """The configured loss between one batch's student and teacher outputs (real tokens only)."""
    keep = mask.bool()
    loss = cfg.loss
    if loss == "auto":  # per-token logits (an LM head): match them; otherwise the final hidden states
        logits = getattr(student_out, "logits", None)
        loss = "logits" if logits is not None and tuple(logits.shape[:2]) == tuple(mask.shape) else "hidden"
    if loss == "hidden":
        return F.mse_loss(_hidden(student_out)[keep].float(), _hidden(teacher_out)[keep].float())
    t = cfg.temperature
    s_log = F.log_softmax(student_out.logits[keep].float() / t, dim=-1)
    t_log = F.log_softmax(teacher_out.logits[keep].float() / t, dim=-1)
    return F.kl_div(s_log, t_log, log_target=True, reduction="batchmean") * t * t


def _lora_wrap(student: nn.Module, cfg: DistillConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model


    found = find_blocks(student)
    prefix = found[0] + "." if found else ""
    targets = sorted({n.rpartition(".")[2] for n, m in student.named_modules()
                      if isinstance(m, nn.Linear) and n.startswith(prefix)})
    if not targets:
        raise ValueError(f"{type(student).__name__}: no nn.Linear in the blocks for LoRA")
    return get_peft_model(student, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                              target_modules=targets))


def distill(student: nn.Module, teacher: nn.Module, windows: torch.Tensor, config: DistillConfig | None = None,
            **options: Any) -> tuple[nn.Module, DistillReport]:
    """Train ``student`` to match ``teacher`` on token windows ``[n, seq]``.

    Args:
        student: the pruned model (trained in place unless ``lora``; then the merged model is returned).
        teacher: the dense model (frozen).
        windows: training token ids (all real tokens).
        config: a DistillConfig, or its fields as keywords (unknown ones raise TypeError).

    Returns:
        (student, DistillReport).

    Example:
        >>> student, rep = distill(pruned, dense, train_windows, steps=300, lr=1e-4)
    """
    config = DistillConfig.resolve("distill()", config, options)
    report = DistillReport(asdict(config))
    masks = get_masks(student)
    if config.lora and masks:  # peft merges into weight.data, which a parametrized weight only computes
        remove_masks(student, make_permanent=True)
    model = _lora_wrap(student, config) if config.lora else student
    params = [p for p in model.parameters() if p.requires_grad]
    report.trainable_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    teacher.eval()
    model.eval()
    device = next(model.parameters()).device
    start = time.perf_counter()
    for step in range(config.steps):
        idx = torch.randint(0, windows.shape[0], (config.batch_size,), generator=gen)
        ids = windows[idx].to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.no_grad():
            t_out = teacher(**batch)
        loss = distill_loss(model(**batch), t_out, batch["attention_mask"], config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        report.steps = step + 1
        report.last_loss = loss.item()
        if step == 0:
            report.first_loss = report.last_loss
        if config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds:
            break
    if config.lora:
        student = model.merge_and_unload()
        if masks:  # the merged adapters must not refill masked weights: mask again
            apply_masks(student, masks)
    report.seconds = time.perf_counter() - start
    return student, report


__all__ = ["DistillConfig", "DistillReport", "distill", "distill_loss"]
