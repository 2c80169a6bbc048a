"""The first steps of a run: the data (seeded splits and loaders, plus what was read) and the base model
(loaded from a file, reused from the cache of trained bases, or trained with the run's seed and cached)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..data import DatasetInfo, Loaders, dataset_info, get_dataset, make_loader
from ..data.provenance import data_read
from ..models import create, spec_of
from ..train import TrainConfig, Trainer, seed_everything
from ..errors import ModelFileError
from ..graph.trace import HEADS_ATTRS, declares_heads
from ..train.checkpoint import atomic_torch_save, read_checked
from ..utils import atomic_write
from .config import DataConfig, WorkflowConfig
from .models import check_fits_data, load_model, model_kwargs

CACHE_VERSION = 2  # 2: model.pt carries a checksum


@dataclass
class RunData:
    """The data of a run: what the models need to know, the loaders, and the files actually read.

    `info` is None for loaders the caller built (`RunData.given`); `description` then stands in report.json's
    "data" block for the config's data section, which such a run does not read."""

    info: DatasetInfo | None
    loaders: Loaders
    read: dict[str, Any]
    description: dict[str, Any] | None = None

    @classmethod
    def given(cls, train: Iterable | None, test: Iterable | None, val: Iterable | None = None,
              description: dict[str, Any] | None = None) -> "RunData":
        """The caller's own loaders (batches of `(inputs, targets)`; inputs a tensor, a tuple of positional
        arguments or a dict of keyword arguments), described in the report by `description` (e.g. the data
        set's name and split sizes).

        No test loader: accuracy is not measured (top1 null in the report). No training loader: a run that
        reads no data (oneshot with a data-free criterion and no fine-tuning, e.g. to time a pruned
        architecture); run_workflow refuses any other config.

        Example:
            >>> data = RunData.given(train_loader, test_loader, description={"dataset": "my-texts"})
            >>> structure_only = RunData.given(None, None, description={"dataset": "none (timing only)"})
        """
        desc = dict(description or {})
        if not desc.get("dataset"):
            desc["dataset"] = "given loaders"
        return cls(None, Loaders(train, val, test), {"source": "loaders given in memory"}, desc)

    def reseed(self, seed: int) -> None:
        """Put every loader's generator (batch order, worker seeds) and every dataset's augmentation generator
        back to `seed`: a step sees the same data whatever an earlier step (base training) drew."""
        for loader in self.loaders:
            if loader is None:
                continue
            if isinstance(loader.generator, torch.Generator):
                loader.generator.manual_seed(seed)
            gen = getattr(loader.dataset, "generator", None)
            if isinstance(gen, torch.Generator):
                gen.manual_seed(seed)


def load_data(cfg: DataConfig, seed: int = 0, image_size: int | None = None) -> RunData:
    """Seeded train / validation / test splits of `cfg.dataset` (resized to `image_size` when given)."""
    info = dataset_info(cfg.dataset, cfg.data_dir, image_size)
    kw = dict(data_dir=cfg.data_dir, val_size=cfg.val_size, seed=seed, image_size=image_size)
    train = get_dataset(cfg.dataset, split="train", augment=cfg.augment, subset=cfg.train_subset or cfg.subset, **kw)
    val = get_dataset(cfg.dataset, split="val", subset=cfg.subset, **kw)
    test = get_dataset(cfg.dataset, split="test", subset=cfg.test_subset or cfg.subset, **kw)
    eb = cfg.eval_batch_size or max(cfg.batch_size, 256)
    loaders = Loaders(make_loader(train, cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.workers),
                      make_loader(val, eb, num_workers=cfg.workers, seed=seed) if len(val) else None,
                      make_loader(test, eb, num_workers=cfg.workers, seed=seed))
    return RunData(info, loaders, data_read(cfg.dataset, cfg.data_dir))


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """Where trained bases are cached: `cache_dir`, else $XDG_CACHE_HOME (or ~/.cache)/prunekit/bases."""
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunekit" / "bases"


def base_key(desc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def _has_entry(folder: Path) -> bool:
    return (folder / "model.pt").exists() and (folder / "base.json").exists()


def _read_entry(folder: Path, model_name: str, kw: dict[str, Any], desc: dict[str, Any], committed: bool
                ) -> tuple[nn.Module, dict[str, Any]]:
    """The trained base stored in `folder` and its base.json record; a damaged entry, or one whose record
    names other settings than `desc` (the folder name is a short hash of them), is an error naming the way out."""
    way_out = ("restore it from the repository (git checkout -- " + str(folder) + ") or delete it to train the base"
               if committed else "delete that folder to train the base again, or run without the cache (--no-cache, "
               "BaseConfig(use_cache=False))")
    what = "committed" if committed else "cached"
    model = create(model_name, **kw)
    try:
        model.load_state_dict(read_checked(folder / "model.pt"))
        info = json.loads((folder / "base.json").read_text())
        if not isinstance(info, dict):
            raise ValueError(f"{folder / 'base.json'} is not a JSON object")
    except (ValueError, RuntimeError, OSError) as e:  # a damaged entry is never replaced silently
        raise ModelFileError(f"{str(e).splitlines()[0]}; the {what} base {folder} is damaged: {way_out}") from None
    asked = json.loads(json.dumps(desc, default=str))  # as base.json holds it (tuples as lists)
    diff = sorted(k for k in asked if info.get(k) != asked[k])
    if diff:
        raise ModelFileError(f"the {what} base {folder}: its base.json records other settings ({', '.join(diff)}) "
                             f"than the base asked for; {way_out}")
    return model, info


def train_base(model_name: str, kw: dict[str, Any], loaders: Loaders, data_desc: dict[str, Any], epochs: int,
               lr: float, seed: int, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
               max_steps: int | None = None, device: str | torch.device | None = None, progress: bool = True,
               log: Callable[[str], None] = print, committed: Iterable[str | os.PathLike] = ()
               ) -> tuple[nn.Module, dict[str, Any]]:
    """(trained base, info): reused from the cache (keyed by model, data, training settings and seed) or
    trained with `seed` set before the model is built, then cached. The same arguments give the same weights.

    With the cache on, the training writes a checkpoint after every epoch into `<entry>/partial/`; a training
    that was stopped (a session that ended, a killed job) continues from its last epoch the next time the same
    base is asked for, with the optimizer, schedule, RNG and data-order state it had, so the weights equal an
    uninterrupted run's (the log says so). The checkpoints are removed once the base is cached.

    `committed`: read-only folders of trained entries (a repository's `benchmarks/bases/`). When the cache has
    no entry for these arguments and one of them holds an entry of the same name, that entry is read in place
    (same checked loader; its base.json must record these very settings) and nothing is written."""
    t0 = time.perf_counter()
    desc = {"model": model_name, "kwargs": kw, "data": data_desc, "epochs": epochs, "lr": lr, "seed": seed,
            "max_steps": max_steps, "v": CACHE_VERSION}
    folder = cache_root(cache_dir) / f"{model_name}-{base_key(desc)}"
    weights = folder / "model.pt"
    if use_cache and not _has_entry(folder):
        # an entry committed with the sources stands in for a missing cache entry; it is never written to
        folder = next((Path(c) / folder.name for c in committed if _has_entry(Path(c) / folder.name)), folder)
    if use_cache and _has_entry(folder):
        model, info = _read_entry(folder, model_name, kw, desc, committed=folder.parent != cache_root(cache_dir))
        log(f"base: reusing {folder} (trained {info.get('epochs')} epochs in {info.get('train_s', 0):.0f} s)")
        return model, {**info, "source": str(folder), "cached": True, "time_s": time.perf_counter() - t0}
    seed_everything(seed)
    model = create(model_name, **kw)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, max_steps_per_epoch=max_steps, progress=progress)
    partial = folder / "partial" if use_cache else None  # per-epoch checkpoints of this very training
    if partial is not None and (partial / "last.pt").exists():
        log(f"base: continuing the interrupted training of {model_name} from {partial / 'last.pt'}")
    else:
        log(f"base: training {model_name} for {epochs} epoch(s)")
    trainer = Trainer(model, loaders.train, loaders.val, cfg, device=device, log=log, checkpoint_dir=partial,
                      resume=partial is not None)
    resumed_at = trainer.epoch
    result = trainer.fit()
    model = model.cpu()
    train_s = time.perf_counter() - t0
    info = {**desc, "train_s": train_s, "history": result.history,
            **({"resumed_at_epoch": resumed_at} if resumed_at else {})}
    if use_cache:
        state = model.state_dict()
        atomic_torch_save(state, weights)
        atomic_write(folder / "base.json", json.dumps(info, indent=2, default=str) + "\n", overwrite=True)
        shutil.rmtree(partial, ignore_errors=True)
    return model, {**info, "source": "trained", "cached": False, "time_s": train_s}


def data_description(cfg: WorkflowConfig) -> dict[str, Any]:
    """The data block of report.json (and part of the base cache key)."""
    d = cfg.data
    return {"dataset": d.dataset, "data_dir": d.data_dir, "subset": d.subset, "seed": cfg.seed,
            "batch_size": d.batch_size, "augment": d.augment, "val_size": d.val_size,
            **({"train_subset": d.train_subset} if d.train_subset else {}),
            **({"test_subset": d.test_subset} if d.test_subset else {})}


def check_heads(cfg: WorkflowConfig, model: nn.Module, name: str) -> None:
    """Refuse prune.heads (--heads) for a model with no attention heads to remove (it would not be read)."""
    if cfg.prune.heads and not declares_heads(model):
        raise ValueError(f"prune.heads=True (--heads) removes whole attention heads, but {name} has none (no module "
                         f"declares {', '.join(HEADS_ATTRS[:3])}, ...); an option this run would not read is "
                         "refused, not ignored: drop it")


def get_base(cfg: WorkflowConfig, data: RunData, log: Callable[[str], None] = print
             ) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any]]:
    """(base model, its registry name, its constructor keywords, info) for a run.

    A `base.path` of another architecture than `model.name` is an error (the report would otherwise label one
    model with the other's name)."""
    m = cfg.model
    if cfg.base.path:
        t0 = time.perf_counter()
        model = load_model(cfg.base.path).cpu()
        spec = spec_of(model)
        if spec is not None and m.name and spec.name != m.name:
            raise ValueError(f"base.path (--base) {cfg.base.path} holds a {spec.name} ({spec.kwargs}), not the "
                             f"model.name (--model) {m.name}; drop model.name or give a base of that architecture")
        if spec is None and not m.name:
            raise ValueError(f"base.path (--base) {cfg.base.path}: cannot tell its registry model; give model.name "
                             "(--model)")
        given = {"num_classes": m.num_classes, "in_channels": m.in_channels,
                 "width": None if m.width == 1.0 else m.width}  # sizes the user set, compared with the base's
        clash = [f"model.{k} (--{k.replace('_', '-')}) {v} (the base has {spec.kwargs.get(k)})" for k, v in given.items()
                 if v is not None and spec is not None and spec.kwargs.get(k) != v]
        if clash:
            raise ValueError(f"base.path (--base) {cfg.base.path} is built already: {', '.join(clash)}; drop the "
                             "setting")
        name = spec.name if spec is not None else m.name
        kw = dict(spec.kwargs) if spec is not None else {}
        check_fits_data(kw, data.info, f"base.path (--base) {cfg.base.path}")
        check_heads(cfg, model, f"base.path (--base) {cfg.base.path}")
        return model, name, kw, {"source": str(cfg.base.path), "time_s": time.perf_counter() - t0}
    info = data.info
    h, w = info.image_size
    kw = model_kwargs(m.name, m.num_classes or info.num_classes, m.in_channels or info.in_channels, m.width,
                      m.input_size or (h if h == w else None))
    check_fits_data(kw, info, "model.num_classes/model.in_channels (--num-classes/--in-channels)")
    if cfg.prune.heads:  # refused before the base is trained: the architecture alone tells
        check_heads(cfg, create(m.name, **kw), m.name)
    model, base_info = train_base(m.name, kw, data.loaders, data_description(cfg), cfg.base.epochs, cfg.base.lr,
                                  cfg.seed, cfg.base.cache_dir, cfg.base.use_cache,
                                  cfg.max_steps_per_epoch if cfg.base.max_steps_per_epoch is None
                                  else cfg.base.max_steps_per_epoch,
                                  cfg.device, cfg.progress, log)
    return model, m.name, kw, base_info


def given_base(cfg: WorkflowConfig, model: nn.Module, any_module: bool = False
               ) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any]]:
    """(model, name, constructor keywords, info) for a base handed to the run in memory.

    A registry model of another architecture than `model.name` is an error. A module without a registry spec
    is taken only when `any_module` (the caller gave the example inputs, so nothing is derived from a
    registry entry); it is named by `model.name`."""
    spec = spec_of(model)
    check_heads(cfg, model, f"base_model ({type(model).__name__})")
    if spec is None:
        if any_module:
            return model, str(cfg.model.name), {}, {"source": "memory", "time_s": 0.0}
        raise ValueError(f"base_model: a {type(model).__name__} without a registry spec (build it with "
                         "prunekit.models.create, or pass example_inputs to prune any module)")
    if cfg.model.name and spec.name != cfg.model.name:
        raise ValueError(f"base_model is a {spec.name} ({spec.kwargs}), not the model.name {cfg.model.name!r}")
    return model, spec.name, dict(spec.kwargs), {"source": "memory", "time_s": 0.0}
