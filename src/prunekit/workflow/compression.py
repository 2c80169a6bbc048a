"""Deep Compression as a run_workflow method: `PruneConfig(method="deep_compression")` prunes single weights
(masks), retrains with the masks for RecoverConfig's epochs at its lr, shares the weights of every layer by
k-means, fine-tunes the centroids and Huffman-codes the model into `<out>/model.pkz`, which is read back and
checked to reproduce the weight-shared model bit for bit.

The goal is a fraction of weights removed: `prune.ratio` (one rate for every layer) or `options["sparsity"]`
(a rate or a per-layer mapping). The method's other knobs (`bits`, `schedule`, `scope`, `finetune_epochs` of the
centroids, ...) are DeepCompressionConfig fields given in `prune.options`. Settings of channel pruning (a MACs
target, a policy, heads, round_to, distillation, int8 after pruning) are refused: nothing here removes a channel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..config import changed_fields
from ..methods.deep_compression import DeepCompressionConfig, DeepCompressionResult, deep_compression
from ..surgery.masks import FilterFn, default_filter
from ..train import TrainConfig
from .config import UNSTRUCTURED_METHODS, WorkflowConfig

(METHOD,) = UNSTRUCTURED_METHODS  # the one unstructured method run_workflow runs
FILE = "model.pkz"

# DeepCompressionConfig fields the run sets from its own config (giving them in prune.options is refused)
SET_BY_RUN = {"retrain_epochs": "recover.finetune_epochs", "retrain_lr": "recover.lr",
              "criterion": "prune.criterion", "filter_fn": "prune.ignore",
              "train_config": "the run's seed, max_steps_per_epoch and progress", "path": f"out (<out>/{FILE})",
              "overwrite": "overwrite", "device": "device", "log": "progress",
              "description": "the base's registry spec"}
# PruneConfig fields that only channel pruning reads
CHANNEL_ONLY = ("policy", "heads", "round_to", "min_channels", "max_ratio", "score_batches", "strict")


def check_config(cfg: WorkflowConfig) -> None:
    """Refuse, before any work, the settings Deep Compression would not read and options it does not take."""
    p, r = cfg.prune, cfg.recover
    unread = [f"prune.target={p.target}"] if p.target else []
    unread += [f"prune.{x}" for x in changed_fields(p, CHANNEL_ONLY)]
    unread += [f"recover.{k}=True" for k in ("distill", "from_scratch") if getattr(r, k)]
    if cfg.quantize is not None:
        unread.append(f"quantize={cfg.quantize.scheme!r}")
    if unread:
        raise ValueError(f"deep_compression removes single weights, not channels: {', '.join(unread)} "
                         "belong to channel pruning; give the fraction of weights removed as prune.ratio (--ratio) "
                         "or options sparsity=...")
    given = sorted(set(p.options) & set(SET_BY_RUN))
    if given:
        raise ValueError("deep_compression: " + "; ".join(f"options {k!r} is set by the run from {SET_BY_RUN[k]}"
                                                          for k in given))
    if p.ratio is not None and p.options.get("sparsity") is not None:
        raise ValueError(f"deep_compression: prune.ratio={p.ratio} and options sparsity="
                         f"{p.options['sparsity']!r} name the same thing; give one of them")
    dc_config(cfg, None, None)  # unknown option names and bad values raise here, naming them


def dc_config(cfg: WorkflowConfig, path: Path | None, log: Callable[[str], None] | None,
              filter_fn: FilterFn | None = None) -> DeepCompressionConfig:
    """The DeepCompressionConfig of this run (its options, plus what the run sets)."""
    p, r = cfg.prune, cfg.recover
    kw: dict[str, Any] = dict(p.options)
    if p.ratio is not None:
        kw["sparsity"] = p.ratio
    if p.criterion:
        kw["criterion"] = p.criterion
    kw.update(retrain_epochs=r.finetune_epochs, retrain_lr=r.lr, filter_fn=filter_fn, device=cfg.device, log=log,
              train_config=TrainConfig(seed=cfg.seed, max_steps_per_epoch=cfg.max_steps_per_epoch,
                                       progress=cfg.progress, verbose=cfg.progress),
              path=None if path is None else str(path), overwrite=True)  # the run prepared its folder
    return DeepCompressionConfig.from_kwargs("PruneConfig(method='deep_compression') options", kw)


def ignore_filter(model: nn.Module, ignore: list[str]) -> FilterFn | None:
    """The layers prune.ignore leaves dense (module names or their weight keys); a name that is no conv or
    linear layer of the model raises, naming it."""
    if not ignore:
        return None
    layers = {n for n, m in model.named_modules() if default_filter(m, n)}
    names = {i[: -len(".weight")] if i.endswith(".weight") else i for i in ignore}
    unknown = sorted(names - layers)
    if unknown:
        raise ValueError(f"prune.ignore: {unknown} name no conv or linear layer of the model; its layers: "
                         f"{', '.join(sorted(layers)[:20])}")
    return lambda module, name: default_filter(module, name) and name not in names


def compress(cfg: WorkflowConfig, model: nn.Module, loaders: Any, out: Path | None,
             log: Callable[[str], None] | None) -> DeepCompressionResult:
    """Run Deep Compression on `model` (changed in place); the compressed file goes to `<out>/model.pkz`."""
    c = dc_config(cfg, None if out is None else out / FILE, log, ignore_filter(model, cfg.prune.ignore))
    return deep_compression(model, loaders.train, loaders.val, loaders.test, config=c)


def report_extra(res: DeepCompressionResult) -> dict[str, Any]:
    """The "deep_compression" block of report.json: stages, per-layer settings, the file and its check, and the
    epochs of the phases after retraining (centroid fine-tuning); the retraining epochs are the report's
    top-level "history", as for every method's recovery, and are not repeated here."""
    d = res.to_dict()
    return {"stages": d["stages"], "layers": d["layers"], "file": d["path"], "exact_reload": d["exact"],
            "notes": {k: v for k, v in d["notes"].items() if k != "config"},
            "history": {k: v for k, v in d["history"].items() if k != "retrain"}}

