"""The Trainer: fine-tuning with SGD/AdamW, warm-up + cosine, AMP on CUDA, checkpoints, resume, hooks, DDP."""
from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as dist_utils
from .checkpoint import FORMAT, atomic_torch_save, capture_rng, load_checkpoint, restore_rng
from .config import TrainConfig, build_optimizer, build_scheduler, seed_everything
from ..utils.inputs import call_model
from .evaluation import evaluate, move, split_batch
from .losses import LossTerm

StepCallback = Callable[["Trainer", int], None]
EpochCallback = Callable[["Trainer", int, dict], None]


@dataclass
class TrainResult:
    """What ``fit`` returns: one dict per epoch, the best and the final validation top-1 (fractions)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float | None = None
    final: dict[str, float] | None = None
    epochs: int = 0
    steps: int = 0
    time_s: float = 0.0


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and suggests a lower rate."""


class ResumeMismatchError(ValueError):
    """A checkpoint to resume from was written for another model or another training configuration."""


# TrainConfig fields a resumed run may change: how long it runs and how it reports, not what it computes
RESUMABLE_CHANGES = frozenset({"epochs", "progress", "verbose", "eval_every"})


def _default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


class Trainer:
    """Train ``model`` on ``train_loader`` (batches of ``(inputs, targets)``), validating on ``val_loader``.

    Config fields can be given as a ``TrainConfig`` or as keyword overrides (``Trainer(m, dl, epochs=3)``).
    ``checkpoint_dir`` gets ``last.pt`` after every epoch and ``best.pt`` when validation top-1 improves, each
    written atomically. ``resume=True`` continues from ``last.pt``; an existing checkpoint that this run did
    not write is never replaced unless ``overwrite=True``; a checkpoint of another model or training
    configuration is refused (``ResumeMismatchError``). A NaN or infinite loss stops training with
    ``TrainingDivergedError`` naming the step. Inside a torch.distributed group the model is wrapped in DDP and
    only rank 0 writes files and logs.
    """

    def __init__(self, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                 config: TrainConfig | None = None, *, device: str | torch.device | None = None,
                 checkpoint_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 log: Callable[[str], None] | None = None, **overrides: Any) -> None:
        config = config or TrainConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        self.device = torch.device(device) if device is not None else _default_device()
        self.module = dist_utils.unwrap_model(model).to(self.device)
        self.model = dist_utils.wrap_model(model.to(self.device), self.device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.loss_fn = loss_fn or (lambda out, y: F.cross_entropy(out, y, label_smoothing=self.config.label_smoothing))
        self._log = log or (lambda line: print(line, flush=True))
        self.loss_terms: list[LossTerm] = []
        self.step_callbacks: list[StepCallback] = []
        self.epoch_callbacks: list[EpochCallback] = []
        self.steps_per_epoch = self._steps_per_epoch()
        self.optimizer = build_optimizer(self.module, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.config, self.steps_per_epoch)
        self.amp = bool(self.config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch = 0            # completed epochs
        self.global_step = 0      # completed optimizer steps
        self.history: list[dict[str, Any]] = []
        self.best_top1: float | None = None
        self.run_id = uuid.uuid4().hex
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.overwrite = overwrite
        self._owned: dict[Path, tuple[int, int] | None] = {}  # files this run may replace -> (mtime_ns, size)
        self._bad_step: torch.Tensor | None = None  # on CUDA: first step whose loss was not finite (-1: none)
        self._resumed = False
        if self.checkpoint_dir is not None:
            self._claim_checkpoints(resume)

    # ----------------------------------------------------------------- hooks
    def add_loss_term(self, fn: LossTerm) -> LossTerm:
        """Add ``fn(model, batch, outputs, loss) -> Tensor`` to every training loss (returns ``fn``)."""
        self.loss_terms.append(fn)
        return fn

    def add_step_callback(self, fn: StepCallback) -> StepCallback:
        """Call ``fn(trainer, step)`` after each optimizer step; ``step`` counts steps done so far (from 1).

        ``trainer.module`` is the plain model (``trainer.model`` may be its DDP wrapper): re-apply masks or
        prune there.
        """
        self.step_callbacks.append(fn)
        return fn

    def add_epoch_callback(self, fn: EpochCallback) -> EpochCallback:
        """Call ``fn(trainer, epoch, record)`` after each epoch (``epoch`` from 1, ``record`` its history row)."""
        self.epoch_callbacks.append(fn)
        return fn

    def rebuild_optimizer(self) -> None:
        """Recreate the optimizer (and DDP wrapper) over the current parameters, e.g. after surgery.

        The schedule keeps its position (the learning rate of step ``global_step``); momentum and Adam moments
        start afresh, as the old ones no longer match the parameter shapes.
        """
        if dist_utils.is_distributed():
            self.model = dist_utils.wrap_model(self.module, self.device)
        else:
            self.model = self.module
        self.optimizer = build_optimizer(self.module, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.config, self.steps_per_epoch)
        self.scheduler.last_epoch = self.global_step
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.global_step)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # ----------------------------------------------------------------- main loop
    def fit(self) -> TrainResult:
        """Train for the configured number of epochs (the remaining ones after a resume)."""
        cfg = self.config
        if not self._resumed and cfg.seed is not None:
            seed_everything(cfg.seed)
        if cfg.deterministic:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        start = time.perf_counter()
        final = None
        for epoch in range(self.epoch, cfg.epochs):
            t0 = time.perf_counter()
            for sampler in (getattr(self.train_loader, "sampler", None),
                            getattr(self.train_loader, "batch_sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
            record: dict[str, Any] = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            last = epoch + 1 == cfg.epochs
            if self.val_loader is not None and ((epoch + 1) % max(1, cfg.eval_every) == 0 or last):
                final = self.evaluate()
                record.update({f"val_{k}": v for k, v in final.items() if k != "count"})
            record["time_s"] = time.perf_counter() - t0
            self.history.append(record)
            self.epoch = epoch + 1
            improved = "val_top1" in record and (self.best_top1 is None or record["val_top1"] > self.best_top1)
            if improved:
                self.best_top1 = record["val_top1"]
            self._checkpoint(best=improved)
            for cb in self.epoch_callbacks:
                cb(self, self.epoch, record)
            self._epoch_line(record)
        return TrainResult(history=list(self.history), best_top1=self.best_top1, final=final, epochs=self.epoch,
                           steps=self.global_step, time_s=time.perf_counter() - start)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training loader (at most ``max_steps_per_epoch`` steps)."""
        self.model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct@1, samples
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with self._progress(epoch) as advance:
            for batch in itertools.islice(self.train_loader, self.steps_per_epoch):
                inputs, targets = move(split_batch(batch), self.device)
                with autocast:
                    outputs = call_model(self.model, inputs)
                    task_loss = self.loss_fn(outputs, targets)
                    loss = task_loss
                    for term in self.loss_terms:
                        loss = loss + term(self.model, (inputs, targets), outputs, task_loss)
                self._check_finite(loss, epoch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.config.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.global_step += 1
                for cb in self.step_callbacks:
                    cb(self, self.global_step)
                with torch.no_grad():
                    n = targets.shape[0]
                    correct = (outputs.detach().argmax(dim=-1) == targets).sum()
                    sums += torch.stack([loss.detach().double() * n, correct.double(),
                                         torch.tensor(float(n), dtype=torch.float64, device=self.device)])
                advance(loss.detach())
        sums = dist_utils.all_reduce_sum(sums.cpu())
        bad = int(self._bad_step)
        if bad >= 0 or not math.isfinite(float(sums[0])):
            self._diverged(bad if bad >= 0 else self.global_step, epoch, float("nan"))
        n = max(1.0, float(sums[2]))
        return {"train_loss": float(sums[0]) / n, "train_top1": float(sums[1]) / n, "lr": self.lr}

    def evaluate(self, loader: Iterable | None = None) -> dict[str, float]:
        """``{"top1", "top5", "loss", "count"}`` of the model on ``loader`` (default: the validation loader)."""
        loader = loader if loader is not None else self.val_loader
        if loader is None:
            raise ValueError("no loader to evaluate on")
        # the plain module: DDP's forward would broadcast buffers, a collective that needs equal batch counts
        return evaluate(self.module, loader, self.device, amp=self.amp)

    def _check_finite(self, loss: torch.Tensor, epoch: int) -> None:
        """Stop at the first non-finite loss. On the CPU the check is free and immediate; on an accelerator the
        first bad step is recorded on the device (no synchronisation per step) and raised at the epoch's end."""
        step = self.global_step + 1
        if loss.device.type == "cpu":
            value = float(loss.detach())
            if not math.isfinite(value):
                self._diverged(step, epoch, value)
            return
        bad = ~torch.isfinite(loss.detach())
        self._bad_step = torch.where(bad & (self._bad_step < 0), torch.full_like(self._bad_step, step),
                                     self._bad_step)

    def _diverged(self, step: int, epoch: int, value: float) -> None:
        what = "NaN" if math.isnan(value) else "infinite"
        raise TrainingDivergedError(f"loss became {what} at step {step} (epoch {epoch + 1}, lr "
                                    f"{self.config.lr:g}); lower the learning rate (TrainConfig.lr, --lr)")

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "format": FORMAT, "version": 1, "run_id": self.run_id, "epoch": self.epoch,
            "global_step": self.global_step, "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else None, "rng": capture_rng(self._generators()),
            "history": self.history, "best_top1": self.best_top1, "config": dataclasses.asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.amp and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self._generators())
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.history, self.best_top1 = list(state["history"]), state["best_top1"]
        self.run_id = state["run_id"]

    def _claim_checkpoints(self, resume: bool) -> None:
        paths = [self.checkpoint_dir / "last.pt", self.checkpoint_dir / "best.pt"]
        existing = [p for p in paths if p.exists()]
        if existing and not resume and not self.overwrite:
            raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s); pass resume=True to continue "
                                  "that run or overwrite=True to replace it")
        for p in paths:
            self._owned[p] = self._stamp(p) if p.exists() else None
        if resume and paths[0].exists():
            state = load_checkpoint(paths[0], map_location=self.device)
            self._check_resumable(state, paths[0])
            self.load_state_dict(state)
            self._resumed = True
            self._info(f"resumed from {paths[0]} at epoch {self.epoch}, step {self.global_step}")

    def _check_resumable(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another model (tensor names or shapes) or another training configuration."""
        ours = self.module.state_dict()
        theirs = state.get("model") or {}
        if set(theirs) != set(ours):
            extra, missing = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
            raise ResumeMismatchError(
                f"{path} holds another model: {len(extra)} tensor(s) not in this one ({', '.join(extra[:3])}), "
                f"{len(missing)} missing ({', '.join(missing[:3])}); resume with the same model and options, "
                "or pass overwrite=True (--overwrite) to start afresh")
        for key, t in ours.items():
            if tuple(theirs[key].shape) != tuple(t.shape):
                raise ResumeMismatchError(f"{path} holds another model: {key} is {list(theirs[key].shape)} there, "
                                          f"{list(t.shape)} here; resume with the same model and options, "
                                          "or pass overwrite=True (--overwrite) to start afresh")
        saved = state.get("config") or {}
        now = dataclasses.asdict(self.config)
        changed = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in now
                   if k in saved and k not in RESUMABLE_CHANGES and _plain(saved[k]) != _plain(now[k])]
        if changed:
            raise ResumeMismatchError(f"{path} was written with another training configuration ({'; '.join(changed)}); "
                                      "a resumed run may only change epochs; pass overwrite=True (--overwrite) to start "
                                      "afresh")

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_mtime_ns, st.st_size

    def save_checkpoint(self, path: str | Path) -> Path | None:
        """Write the full training state to ``path`` atomically (only on the main process)."""
        path = Path(path)
        if not dist_utils.is_main_process():
            return None
        if path.exists() and not self.overwrite and self._owned.get(path, "missing") != self._stamp(path):
            raise FileExistsError(f"{path} was not written by this run; refusing to overwrite it "
                                  "(pass overwrite=True to allow)")
        atomic_torch_save(self.state_dict(), path)
        self._owned[path] = self._stamp(path)
        return path

    def _checkpoint(self, best: bool) -> None:
        if self.checkpoint_dir is None:
            return
        self.save_checkpoint(self.checkpoint_dir / "last.pt")
        if best:
            self.save_checkpoint(self.checkpoint_dir / "best.pt")
        dist_utils.barrier()

    def _generators(self) -> list[torch.Generator]:
        """The loader's shuffling generators, saved with the RNG state so a resumed epoch sees the same order."""
        found = []
        for obj in (self.train_loader, getattr(self.train_loader, "sampler", None),
                    getattr(self.train_loader, "dataset", None)):  # the dataset's augmentation generator
            g = getattr(obj, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not h for h in found):
                found.append(g)
        return found

    # ----------------------------------------------------------------- output
    def _steps_per_epoch(self) -> int:
        cap = self.config.max_steps_per_epoch
        if self.train_loader is None:
            raise TypeError("the Trainer needs a train loader (an iterable of (inputs, targets) batches), got None; "
                            "pass one, or no fine-tuning epochs")
        try:
            n = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            if cap is None:
                raise ValueError("the train loader has no len(); set max_steps_per_epoch") from None
            return cap
        return max(1, min(n, cap) if cap else n)

    def _info(self, line: str) -> None:
        if self.config.verbose and dist_utils.is_main_process():
            self._log(line)

    def _epoch_line(self, r: dict[str, Any]) -> None:
        parts = [f"epoch {r['epoch']}/{self.config.epochs}", f"loss {r['train_loss']:.4f}",
                 f"train_top1 {100 * r['train_top1']:.2f}%"]
        if "val_top1" in r:
            parts += [f"val_top1 {100 * r['val_top1']:.2f}%", f"val_loss {r['val_loss']:.4f}"]
        parts += [f"lr {r['lr']:.3g}", f"{r['time_s']:.1f}s"]
        self._info("  ".join(parts))

    def _progress(self, epoch: int):
        """Context giving ``advance(loss)``: a rich bar on a terminal (main process), silent otherwise."""
        tty = getattr(sys.stderr, "isatty", None)
        show = self.config.progress and dist_utils.is_main_process() and bool(tty and tty())
        if not show:
            return nullcontext(lambda loss: None)  # never reads the loss: no device sync per step
        return _RichBar(f"epoch {epoch + 1}/{self.config.epochs}", self.steps_per_epoch, lambda: self.lr)


def _plain(v: Any) -> Any:
    """A config value in the form a checkpoint round trip gives back (tuples as lists)."""
    return list(v) if isinstance(v, tuple) else v


class _RichBar:
    def __init__(self, description: str, total: int, lr: Callable[[], float]) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True,
                                 console=Console(file=sys.stderr))
        self.description, self.total, self.lr = description, total, lr

    def __enter__(self) -> Callable[[torch.Tensor], None]:
        self.progress.start()
        task = self.progress.add_task(self.description, total=self.total, info="")

        def advance(loss: torch.Tensor) -> None:
            self.progress.update(task, advance=1, info=f"loss {float(loss):.4f} lr {self.lr():.3g}")

        return advance

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
