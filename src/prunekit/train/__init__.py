"""Training: the Trainer, evaluation, distillation, sparsity regularisers and torch.distributed helpers."""
from . import distributed
from .checkpoint import atomic_torch_save, load_checkpoint
from .config import TrainConfig, build_optimizer, build_scheduler, lr_factor, seed_everything
from .distributed import init_distributed, is_main_process
from .evaluation import correct_topk, evaluate
from .losses import DistillationLoss, as_loss_term
from .regularizers import bn_l1, group_lasso
from .trainer import ResumeMismatchError, TrainingDivergedError, TrainResult, Trainer

__all__ = [
    "Trainer", "TrainConfig", "TrainResult", "TrainingDivergedError", "ResumeMismatchError", "evaluate", "correct_topk",
    "DistillationLoss", "as_loss_term", "bn_l1", "group_lasso",
    "distributed", "init_distributed", "is_main_process",
    "atomic_torch_save", "load_checkpoint", "build_optimizer", "build_scheduler", "lr_factor", "seed_everything",
]
