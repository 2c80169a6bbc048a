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
from typing import Any, ClassVar

import torch
from torch import nn

from prunekit.compress import (
    DEFAULT_INDEX_BITS, StageSize, dense_bytes, load_compressed, quantized_bytes, save_compressed,
    share_weights, sparse_bytes, unshare_weights,
)
from prunekit.config import Config, check_bool, check_choice, check_float, check_int, unknown_keywords
from prunekit.models import spec_of
from prunekit.surgery.masks import FilterFn, remove_masks, target_layers
from prunekit.train import TrainConfig, Trainer, evaluate
from prunekit.unstructured import AGPPruner, prune_unstructured
from prunekit.unstructured.criteria import WEIGHT_CRITERIA, criterion_options
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


def _bits_ok(bits: Any) -> bool:
    vals = bits.values() if isinstance(bits, Mapping) else [bits]
    return all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16 for v in vals)


@dataclass
class DeepCompressionConfig(Config):
    """Every knob of Deep Compression (see `deep_compression`).

    sparsity: float or per-layer mapping (None: conv 0.7, linear 0.92), reached one-shot before retraining
    (schedule "oneshot") or with AGP over the first `agp_fraction` of the `retrain_epochs` ("agp"); scope
    "layer" or "global"; criterion a weight criterion name (magnitude, lamp, obd, random) with its options in
    criterion_kw. bits: weight-sharing bit width (int or per-layer mapping; None: conv 8, linear 5), k-means
    over `kmeans_iters`. index_bits: relative-index width of the size estimates. train_config: the other
    training settings; epochs and lr are set per phase. path: the compressed file (None: a temporary one).
    """

    RUNTIME: ClassVar[tuple[str, ...]] = ("filter_fn", "log")
    CONVERT: ClassVar[dict[str, Callable[[Any], Any]]] = {"train_config": lambda d: TrainConfig(**d)}

    sparsity: Sparsity | None = None
    scope: str = "layer"
    criterion: str = "magnitude"
    criterion_kw: dict[str, Any] = field(default_factory=dict)
    schedule: str = "oneshot"
    retrain_epochs: int = 4
    retrain_lr: float = 0.01
    agp_fraction: float = 0.5
    bits: int | dict[str, int] | None = None
    kmeans_iters: int = 100
    finetune_epochs: int = 2
    finetune_lr: float = 0.001
    index_bits: int | dict[str, int] = field(default_factory=lambda: dict(DEFAULT_INDEX_BITS))
    filter_fn: FilterFn | None = None
    train_config: TrainConfig | None = None
    path: str | None = None
    description: Any = None
    overwrite: bool = False
    device: str | None = None
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        w = "DeepCompressionConfig"
        check_choice(w, "scope", self.scope, ("layer", "global"))
        check_choice(w, "schedule", self.schedule, ("oneshot", "agp"))
        fn = WEIGHT_CRITERIA.entry(self.criterion).obj
        self.criterion_kw = dict(self.criterion_kw or {})
        unknown_keywords(f"{w} criterion_kw for {self.criterion!r}", self.criterion_kw, criterion_options(fn))
        check_int(w, "retrain_epochs", self.retrain_epochs, lo=0)
        check_float(w, "retrain_lr", self.retrain_lr, 0.0, None, lo_open=True)
        check_float(w, "agp_fraction", self.agp_fraction, 0.0, 1.0, lo_open=True)
        if self.schedule == "agp" and self.retrain_epochs == 0:
            raise ValueError(f"{w}: schedule='agp' needs retrain_epochs > 0")
        for name in ("bits", "index_bits"):
            value = getattr(self, name)
            if value is not None and not _bits_ok(value):
                raise ValueError(f"{w}: {name}={value!r} must be an int in [1, 16] or a mapping of such ints")
        check_int(w, "kmeans_iters", self.kmeans_iters, lo=1)
        check_int(w, "finetune_epochs", self.finetune_epochs, lo=0)
        check_float(w, "finetune_lr", self.finetune_lr, 0.0, None, lo_open=True)
        check_bool(w, "overwrite", self.overwrite)
        if self.path is not None:
            self.path = os.fspath(self.path)
        if self.device is not None:
            self.device = str(self.device)


def deep_compression(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None,
                     test_loader: Iterable | None = None, config: DeepCompressionConfig | None = None,
                     **options: Any) -> DeepCompressionResult:
    """Run the whole pipeline on ``model`` (trained, modified in place) and report every stage.

    Args:
        model: a trained model, changed in place.
        train_loader, val_loader: retraining and fine-tuning batches (val_loader for the Trainer).
        test_loader: where accuracy is measured (else val_loader).
        config: a DeepCompressionConfig, or its fields as keywords (an unknown one raises TypeError listing
            the valid ones).

    Returns:
        A DeepCompressionResult: per stage its bytes, ratio and accuracy; the model read back from the file.

    Example:
        >>> res = deep_compression(net, train, None, test, sparsity=0.8, bits=4, retrain_epochs=1)
        >>> res.stage("huffman").ratio > 10
        True
    """
    if config is None:
        config = DeepCompressionConfig.from_kwargs("deep_compression()", options)
    elif options:
        raise TypeError(f"deep_compression() got config= and keyword options {sorted(options)}; give one of them")
    c = config
    sparsity = {"conv": 0.7, "linear": 0.92} if c.sparsity is None else c.sparsity
    bits = {"conv": 8, "linear": 5} if c.bits is None else c.bits
    base = c.train_config or TrainConfig()
    eval_loader = test_loader if test_loader is not None else val_loader
    dev = torch.device(c.device if c.device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)

    def accuracy(m: nn.Module) -> float | None:
        return None if eval_loader is None else float(evaluate(m, eval_loader, dev)["top1"])

    dense = dense_bytes(model)
    stages = [StageSize("dense", dense, 1.0, accuracy(model))]
    notes: dict[str, Any] = {"config": c.to_dict()}
    history: dict[str, list[dict[str, Any]]] = {}
    _prune_and_retrain(model, train_loader, val_loader, c, sparsity, base, dev, accuracy, notes, history)
    stages.append(StageSize("pruned", sparse_bytes(model, c.index_bits, c.filter_fn), 0.0, accuracy(model)))

    # 2. weight sharing + centroid fine-tuning
    remove_masks(model, make_permanent=True)
    infos = share_weights(model, bits, c.filter_fn, iters=c.kmeans_iters)
    notes["accuracy_quantized_before_finetune"] = accuracy(model)
    for name, prm in model.named_parameters():
        if name.endswith("parametrizations.weight.original"):
            prm.requires_grad_(False)   # the stored dense weights are unused now
    finetune = TrainConfig(**{**asdict(base), "epochs": c.finetune_epochs, "lr": c.finetune_lr})
    history["finetune"] = _train(model, train_loader, val_loader, finetune, dev, c.log)
    stages.append(StageSize("quantized", quantized_bytes(model, c.index_bits, c.filter_fn), 0.0, accuracy(model)))

    # 3. Huffman: write the container, read it back, check it
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        out = c.path if c.path is not None else os.path.join(tmp, "model.pkz")
        info = save_compressed(model, out, c.description,
                               meta={"stages": [asdict(s) for s in stages]}, overwrite=c.overwrite)
        target = None if (c.description or spec_of(model)) else _dense_copy(model)
        loaded = load_compressed(out, model=target, device=dev)
    exact = _same_outputs(model, loaded, eval_loader or train_loader, dev)
    stages.append(StageSize("huffman", info.file_bytes, 0.0, accuracy(loaded)))
    for s in stages:
        s.ratio = dense / s.bytes
    layers = []
    for key, m in target_layers(loaded, c.filter_fn):
        shared = infos.get(key)
        layers.append(LayerReport(key, m.weight.numel(), int((m.weight != 0).sum()),
                                  shared.bits if shared else None, shared.clusters if shared else None,
                                  info.tensor_bytes.get(key, 0)))
    return DeepCompressionResult(stages, layers, loaded, None if c.path is None else info.path, exact, notes, history)


def _prune_and_retrain(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None,
                       c: DeepCompressionConfig, sparsity: Sparsity, base: TrainConfig, dev: torch.device,
                       accuracy: Callable[[nn.Module], float | None], notes: dict[str, Any],
                       history: dict[str, list[dict[str, Any]]]) -> None:
    """Stage 1: masks (one-shot, or AGP during retraining), then retraining with the masks."""
    retrain = TrainConfig(**{**asdict(base), "epochs": c.retrain_epochs, "lr": c.retrain_lr})
    callbacks = []
    if c.schedule == "oneshot":
        prune_unstructured(model, sparsity, c.criterion, c.scope, c.filter_fn, **c.criterion_kw)
        notes["accuracy_pruned_before_retrain"] = accuracy(model)
    else:
        steps = c.retrain_epochs * _steps_per_epoch(train_loader, base)
        agp = AGPPruner(model, sparsity, total_steps=max(1, int(c.agp_fraction * steps)),
                        frequency=max(1, steps // (10 * c.retrain_epochs)), criterion=c.criterion, scope=c.scope,
                        filter_fn=c.filter_fn, criterion_kw=dict(c.criterion_kw))
        callbacks.append(agp)
    history["retrain"] = _train(model, train_loader, val_loader, retrain, dev, c.log, callbacks)
    if c.schedule == "agp":
        notes["agp_history"] = agp.history


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
