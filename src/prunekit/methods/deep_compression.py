"""Deep Compression (Han et al., ICLR 2016): prune -> retrain -> share weights -> fine-tune centroids -> Huffman.

Every stage reports its storage size and test accuracy: dense float32, pruned sparse (float32 values +
relative indices), quantized (codebook + cluster indices + relative indices) and Huffman (the bytes of the
compressed file itself, which is read back and checked to reproduce the weight-shared model bit for bit).
"""
from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.compress import (
    DEFAULT_INDEX_BITS, StageSize, dense_bytes, load_compressed, quantized_bytes, save_compressed,
    share_weights, sparse_bytes, unshare_weights,
)
from prunekit.surgery.masks import FilterFn, remove_masks, target_layers
from prunekit.train import TrainConfig, Trainer, evaluate
from prunekit.unstructured import AGPPruner, prune_unstructured
from prunekit.unstructured.prune import Sparsity


@dataclass
class LayerReport:
    key: str
    numel: int
    nonzero: int
    bits: int | None          # weight-sharing bit width (None: not shared)
    clusters: int | None
    stored_bytes: int         # bytes of this tensor's sections in the compressed file

    @property
    def density(self) -> float:
        return self.nonzero / self.numel if self.numel else 0.0


@dataclass
class DeepCompressionResult:
    stages: list[StageSize]
    layers: list[LayerReport]
    model: nn.Module                       # the dense model read back from the compressed file
    path: str | None                       # the compressed file (None when it was temporary)
    exact: bool                            # reloaded outputs == weight-shared outputs, bit for bit
    notes: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def stage(self, name: str) -> StageSize:
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages],
                "layers": [{**asdict(l), "density": l.density} for l in self.layers],
                "path": self.path, "exact": self.exact, "notes": self.notes, "history": self.history}

    def table(self) -> str:
        """Markdown table: stage, bytes, ratio, test top-1."""
        rows = ["| stage | bytes | ratio | test top-1 |", "|---|---:|---:|---:|"]
        for s in self.stages:
            acc = "" if s.accuracy is None else f"{100 * s.accuracy:.2f}%"
            rows.append(f"| {s.stage} | {s.bytes:,} | {s.ratio:.1f}x | {acc} |")
        return "\n".join(rows)


def _train(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, config: TrainConfig,
           device: torch.device | str | None, log: Callable[[str], None] | None,
           callbacks: Iterable[Callable] = ()) -> list[dict[str, Any]]:
    if config.epochs <= 0:
        return []
    trainer = Trainer(model, train_loader, val_loader, config, device=device, log=log)
    for cb in callbacks:
        trainer.add_step_callback(cb)
    return trainer.fit().history


def deep_compression(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                     test_loader: Iterable | None = None, *,
                     sparsity: Sparsity | None = None, scope: str = "layer", criterion: str = "magnitude",
                     criterion_kw: Mapping[str, Any] | None = None, schedule: str = "oneshot",
                     retrain_epochs: int = 4, retrain_lr: float = 0.01, agp_fraction: float = 0.5,
                     bits: int | Mapping[str, int] | None = None, kmeans_iters: int = 100,
                     finetune_epochs: int = 2, finetune_lr: float = 0.001,
                     index_bits: int | Mapping[str, int] = DEFAULT_INDEX_BITS,
                     filter_fn: FilterFn | None = None, train_config: TrainConfig | None = None,
                     path: str | os.PathLike | None = None, description: Mapping[str, Any] | str | None = None,
                     overwrite: bool = False, device: torch.device | str | None = None,
                     log: Callable[[str], None] | None = None) -> DeepCompressionResult:
    """Run the whole pipeline on ``model`` (trained, modified in place) and report every stage.

    ``sparsity``: float or per-layer mapping (default ``{"conv": 0.7, "linear": 0.92}``), reached one-shot
    before retraining (``schedule="oneshot"``) or with AGP over the first ``agp_fraction`` of the
    ``retrain_epochs`` (``"agp"``). ``bits``: weight-sharing bit width per layer (default conv 8, linear 5).
    ``index_bits``: relative-index width of the pruned/quantized size estimates (the paper's 8 / 5).
    ``train_config`` holds the other training settings (optimizer, weight decay...); epochs and lr are set
    per phase. The compressed file goes to ``path`` (a temporary file when None). Accuracy is measured on
    ``test_loader`` (else ``val_loader``).
    """
    sparsity = {"conv": 0.7, "linear": 0.92} if sparsity is None else sparsity
    bits = {"conv": 8, "linear": 5} if bits is None else bits
    if schedule not in ("oneshot", "agp"):
        raise ValueError(f"schedule must be 'oneshot' or 'agp', got {schedule!r}")
    base = train_config or TrainConfig()
    eval_loader = test_loader if test_loader is not None else val_loader
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)

    def accuracy(m: nn.Module) -> float | None:
        return None if eval_loader is None else float(evaluate(m, eval_loader, dev)["top1"])

    dense = dense_bytes(model)
    stages = [StageSize("dense", dense, 1.0, accuracy(model))]
    notes: dict[str, Any] = {}
    history: dict[str, list[dict[str, Any]]] = {}

    # 1. prune + retrain with masks
    retrain = TrainConfig(**{**asdict(base), "epochs": retrain_epochs, "lr": retrain_lr})
    callbacks = []
    if schedule == "oneshot":
        prune_unstructured(model, sparsity, criterion, scope, filter_fn, **dict(criterion_kw or {}))
        notes["accuracy_pruned_before_retrain"] = accuracy(model)
    else:
        if retrain_epochs <= 0:
            raise ValueError("schedule='agp' needs retrain_epochs > 0")
        steps = retrain_epochs * _steps_per_epoch(train_loader, base)
        agp = AGPPruner(model, sparsity, total_steps=max(1, int(agp_fraction * steps)),
                        frequency=max(1, steps // (10 * retrain_epochs)), criterion=criterion, scope=scope,
                        filter_fn=filter_fn, criterion_kw=dict(criterion_kw or {}))
        callbacks.append(agp)
    history["retrain"] = _train(model, train_loader, val_loader, retrain, dev, log, callbacks)
    if schedule == "agp":
        notes["agp_history"] = agp.history
    stages.append(StageSize("pruned", sparse_bytes(model, index_bits, filter_fn), 0.0, accuracy(model)))

    # 2. weight sharing + centroid fine-tuning
    remove_masks(model, make_permanent=True)
    infos = share_weights(model, bits, filter_fn, iters=kmeans_iters)
    notes["accuracy_quantized_before_finetune"] = accuracy(model)
    for name, prm in model.named_parameters():
        if name.endswith("parametrizations.weight.original"):
            prm.requires_grad_(False)   # the stored dense weights are unused now
    finetune = TrainConfig(**{**asdict(base), "epochs": finetune_epochs, "lr": finetune_lr})
    history["finetune"] = _train(model, train_loader, val_loader, finetune, dev, log)
    stages.append(StageSize("quantized", quantized_bytes(model, index_bits, filter_fn), 0.0, accuracy(model)))

    # 3. Huffman: write the container, read it back, check it
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.fspath(path) if path is not None else os.path.join(tmp, "model.pkz")
        info = save_compressed(model, out, description,
                               meta={"stages": [asdict(s) for s in stages]}, overwrite=overwrite)
        target = None if (description or getattr(model, "_prunekit_spec", None)) else _dense_copy(model)
        loaded = load_compressed(out, model=target, device=dev)
    exact = _same_outputs(model, loaded, eval_loader or train_loader, dev)
    stages.append(StageSize("huffman", info.file_bytes, 0.0, accuracy(loaded)))
    for s in stages:
        s.ratio = dense / s.bytes
    layers = []
    for key, m in target_layers(loaded, filter_fn):
        shared = infos.get(key)
        layers.append(LayerReport(key, m.weight.numel(), int((m.weight != 0).sum()),
                                  shared.bits if shared else None, shared.clusters if shared else None,
                                  info.tensor_bytes.get(key, 0)))
    return DeepCompressionResult(stages, layers, loaded, None if path is None else info.path, exact, notes, history)


def _steps_per_epoch(loader: Iterable, config: TrainConfig) -> int:
    n = len(loader)  # type: ignore[arg-type]
    return min(n, config.max_steps_per_epoch) if config.max_steps_per_epoch else n


def _dense_copy(model: nn.Module) -> nn.Module:
    """A plain copy of ``model`` (parametrizations removed) to load a compressed file into."""
    dense = copy.deepcopy(model)
    unshare_weights(dense)
    return remove_masks(dense, make_permanent=True)


@torch.no_grad()
def _same_outputs(a: nn.Module, b: nn.Module, loader: Iterable, device: torch.device | str) -> bool:
    batch = next(iter(loader))
    x = batch[0] if isinstance(batch, (tuple, list)) else batch["input"]
    a.eval(), b.eval()
    return bool(torch.equal(a(x.to(device)), b(x.to(device))))
