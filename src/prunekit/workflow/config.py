"""The configuration of one whole run (base -> prune -> recover -> quantize -> measure -> save -> report):
dataclasses validated in `__post_init__`, JSON round-trippable (`to_dict` / `from_dict`), and recorded in
report.json under "config". Unknown keys raise TypeError naming them and the valid ones.

Example:
    >>> cfg = WorkflowConfig(model=ModelConfig("resnet20", width=0.5), data=DataConfig("digits"),
    ...                      prune=PruneConfig(method="oneshot", ratio=0.3), out="runs/p1")
    >>> WorkflowConfig.from_json(cfg.to_json()) == cfg
    True
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..config import changed_fields, json_data
from ..criteria import get_criterion
from ..data import canonical_name
from ..methods import METHODS
from ..methods.config import unread_mode_settings
from ..planning import PlanConfig
from ..registry import Registry, normalize_key

TARGET_KEYS = ("macs", "params", "latency", "size")
# Methods that remove single weights rather than channels: run_workflow runs them through its own branch
# (prunekit.workflow.compression); their goal is a fraction of weights removed (ratio, or options["sparsity"]).
UNSTRUCTURED_METHODS = ("deep_compression",)
# The methods that score with their criterion on `score_batches` training batches; the others score from the
# weights (admm) or while they train (coarse, slimming, group_lasso), so the setting would not be read there.
SCORED_METHODS = ("oneshot", "iterative", "srr")


def default_criterion(method: str) -> str | None:
    """The criterion a registered method uses when none is given (None for a name that is not registered)."""
    if method not in METHODS.names():
        return None
    defaults = getattr(METHODS.get(method).config_type, "PLAN_DEFAULTS", None) or {}
    return defaults.get("criterion", PlanConfig.criterion)  # else the planner's own default


def reads_score_batches(method: str | None, criterion: str | None) -> bool:
    """Whether a run of `method` (default oneshot) with `criterion` (default: the method's) reads
    score_batches. True for a method or criterion name that is not registered: the run names that itself."""
    method = normalize_key(method or "oneshot")
    if method not in METHODS.names():
        return True
    if method not in SCORED_METHODS:
        return False
    name = criterion or default_criterion(method)
    try:
        return bool(get_criterion(name).needs_data)
    except (KeyError, ValueError, TypeError):
        return True


SCORE_BATCHES_UNREAD = ("is read by the data-driven criteria (taylor, apoz, ...) of the oneshot, iterative and srr "
                        "methods; this run's method and criterion read no batches")


def _fail(cls: type, msg: str) -> None:
    raise ValueError(f"{cls.__name__}: {msg}")


def _check(obj: Any, name: str, ok: bool, rule: str) -> None:
    if not ok:
        _fail(type(obj), f"{name} must be {rule}, got {getattr(obj, name)!r}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _opt_count(v: Any, lo: int) -> bool:
    return v is None or (_int(v) and v >= lo)


def from_mapping(cls: type, data: dict[str, Any]) -> Any:
    """An instance of dataclass `cls` from a dict; keys it lacks raise TypeError naming them and the valid ones."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(names)}")
    return cls(**data)


@dataclass
class ModelConfig:
    """The architecture: a registry name (None with a base file: the file's own), sized for the data set."""

    name: str | None = None
    num_classes: int | None = None   # default: the data set's
    in_channels: int | None = None   # default: the data set's
    width: float = 1.0
    input_size: int | None = None    # image side (default: the data set's)

    def __post_init__(self) -> None:
        _check(self, "name", self.name is None or (isinstance(self.name, str) and self.name.strip() != ""),
               "a model name")
        _check(self, "num_classes", _opt_count(self.num_classes, 2), "an integer >= 2 or None")
        _check(self, "in_channels", _opt_count(self.in_channels, 1), "an integer >= 1 or None")
        _check(self, "width", _num(self.width) and self.width > 0, "a number > 0")
        _check(self, "input_size", _opt_count(self.input_size, 1), "an integer >= 1 or None")


@dataclass
class DataConfig:
    """Which data set, where it is read from, and how it is split and batched."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None         # the only place read when given
    val_size: int | float | None = None  # count or fraction carved from training (None: the data set's default)
    subset: int | None = None            # at most this many samples in every split
    train_subset: int | None = None      # overrides subset for the training split
    test_subset: int | None = None       # overrides subset for the test split
    batch_size: int = 128
    eval_batch_size: int | None = None   # default: max(batch_size, 256)
    workers: int = 0
    augment: bool = False

    def __post_init__(self) -> None:
        self.dataset = canonical_name(self.dataset)
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        v = self.val_size
        _check(self, "val_size", v is None or (_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v < 1),
               "a count >= 0, a fraction in [0, 1) or None")
        for name in ("subset", "train_subset", "test_subset", "eval_batch_size"):
            _check(self, name, _opt_count(getattr(self, name), 1), "an integer >= 1 or None")
        _check(self, "batch_size", _int(self.batch_size) and self.batch_size >= 1, "an integer >= 1")
        _check(self, "workers", _int(self.workers) and self.workers >= 0, "an integer >= 0")


@dataclass
class BaseConfig:
    """The starting model: loaded from `path`, else trained (and cached under `cache_dir` when use_cache)."""

    path: str | None = None
    epochs: int = 10
    lr: float = 0.1
    cache_dir: str | None = None   # default ~/.cache/prunekit/bases
    use_cache: bool = True
    max_steps_per_epoch: int | None = None  # cap of the base training's epochs; None: the run's max_steps_per_epoch

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = str(self.path)
        if self.cache_dir is not None:
            self.cache_dir = str(self.cache_dir)
        _check(self, "epochs", _int(self.epochs) and self.epochs >= 0, "an integer >= 0")
        _check(self, "lr", _num(self.lr) and self.lr > 0, "a number > 0")
        _check(self, "max_steps_per_epoch", _opt_count(self.max_steps_per_epoch, 1), "an integer >= 1 or None")
        if self.path is not None and self.max_steps_per_epoch is not None:
            _fail(BaseConfig, f"max_steps_per_epoch caps the base's training; a base loaded from {self.path} is not "
                              "trained (leave it None)")
        if self.path is not None:  # the training settings are not read for a loaded base: refuse them
            unread = changed_fields(self, ("epochs", "lr", "use_cache"))
            if unread:
                _fail(BaseConfig, f"{', '.join(unread)} would not be read: they set how the base is trained, and "
                                  f"a base loaded from {self.path} is not trained (leave them at their defaults)")


@dataclass
class PruneConfig:
    """The method (by registered name) and what it aims for: a target (fractions kept) or a ratio removed.
    An unknown method, or neither a target nor a ratio (nor, for deep_compression, options["sparsity"]), raises
    ValueError when the config is built."""

    method: str = "oneshot"
    criterion: str | None = None     # default: the method's
    policy: str | None = None        # default: the method's
    target: dict[str, float] = field(default_factory=dict)  # {"macs"|"params"|"latency"|"size": kept fraction}
    ratio: float | None = None       # fraction of channels removed (instead of a target)
    ignore: list[str] = field(default_factory=list)  # module names / state_dict keys left untouched
    heads: bool = False              # remove whole attention heads
    round_to: int = 1
    min_channels: int = 1
    max_ratio: float = 0.9
    score_batches: int = 8           # batches read by data-driven criteria (oneshot, iterative, srr)
    strict: bool = True              # False: an unreachable target gives the most pruned plan, with a warning
    options: dict[str, Any] = field(default_factory=dict)  # the method's own keywords (it rejects unknown ones)

    def __post_init__(self) -> None:
        _check(self, "method", isinstance(self.method, str) and self.method.strip() != "", "a method name")
        self.method = normalize_key(self.method)
        known = sorted([*METHODS.names(), *UNSTRUCTURED_METHODS])
        if self.method not in known:  # named here, not first inside run_workflow
            near = difflib.get_close_matches(self.method, known, n=1, cutoff=0.6)
            _fail(PruneConfig, f"unknown method {self.method!r}; choose one of: {', '.join(known)}"
                               + (f" (did you mean {near[0]!r}?)" if near else ""))
        if not isinstance(self.target, dict):
            _fail(PruneConfig, f"target must be a mapping of {', '.join(TARGET_KEYS)} to fractions")
        bad = sorted(set(self.target) - set(TARGET_KEYS))
        if bad:
            raise TypeError(f"PruneConfig: unknown target key(s) {bad}; valid: {', '.join(TARGET_KEYS)}")
        for k, v in self.target.items():
            if not (_num(v) and 0 < v <= 1):
                _fail(PruneConfig, f"target {k} must be a fraction kept in (0, 1], got {v!r}")
        _check(self, "ratio", self.ratio is None or (_num(self.ratio) and 0 <= self.ratio < 1),
               "a fraction in [0, 1) or None")
        if self.target and self.ratio is not None:
            _fail(PruneConfig, "give either a target or a ratio, not both")
        if isinstance(self.ignore, str):
            self.ignore = [self.ignore]  # one name, never its characters
        self.ignore = list(self.ignore)
        _check(self, "round_to", _int(self.round_to) and self.round_to >= 1, "an integer >= 1")
        _check(self, "min_channels", _int(self.min_channels) and self.min_channels >= 1, "an integer >= 1")
        _check(self, "max_ratio", _num(self.max_ratio) and 0 < self.max_ratio < 1, "a fraction in (0, 1)")
        _check(self, "score_batches", _int(self.score_batches) and self.score_batches >= 1, "an integer >= 1")
        if not isinstance(self.options, dict):
            _fail(PruneConfig, "options must be a mapping of the method's keyword arguments")
        if (self.method not in UNSTRUCTURED_METHODS and changed_fields(self, ["score_batches"])
                and not reads_score_batches(self.method, self.criterion or self.options.get("criterion"))):
            _fail(PruneConfig, f"score_batches={self.score_batches} {SCORE_BATCHES_UNREAD}: drop it")
        self.goal()  # nothing to aim for (no target, an empty one, no ratio) is refused here, naming what to give

    def goal(self) -> dict[str, float]:
        """The target, or {"ratio": r} (for an unstructured method also {"sparsity": its option}); a ValueError
        when neither is given."""
        if self.target:
            return dict(self.target)
        if self.ratio is not None:
            return {"ratio": self.ratio}
        if self.method in UNSTRUCTURED_METHODS and self.options.get("sparsity") is not None:
            return {"sparsity": self.options["sparsity"]}
        raise ValueError(f"PruneConfig: nothing to aim for (target={self.target}, ratio=None): give a target, e.g. "
                         "target={'macs': 0.5} (--target-macs, --target-params, --target-latency, --target-size), "
                         "or a ratio (ratio=, --ratio)")


@dataclass
class RecoverConfig:
    """Fine-tuning after pruning (or training the pruned architecture from scratch). temperature and
    distill_weight are read only with distill, scratch_epochs only with from_scratch: set otherwise, they raise."""

    finetune_epochs: int = 3
    lr: float = 0.01
    distill: bool = False
    temperature: float = 4.0
    distill_weight: float = 0.5
    from_scratch: bool = False
    scratch_epochs: int | None = None

    def __post_init__(self) -> None:
        _check(self, "finetune_epochs", _int(self.finetune_epochs) and self.finetune_epochs >= 0, "an integer >= 0")
        _check(self, "lr", _num(self.lr) and self.lr > 0, "a number > 0")
        _check(self, "temperature", _num(self.temperature) and self.temperature > 0, "a number > 0")
        _check(self, "distill_weight", _num(self.distill_weight) and 0 <= self.distill_weight <= 1,
               "a weight in [0, 1]")
        _check(self, "scratch_epochs", _opt_count(self.scratch_epochs, 0), "an integer >= 0 or None")
        unread = unread_mode_settings(self)  # recorded in report.json but never read: refused
        if unread:
            _fail(RecoverConfig, unread)


# Quantizers after pruning, by scheme name: fn(model, example_inputs, calibration_loader, QuantizeConfig,
# **context) -> (model, info dict); context: out (run folder or None), test_loader, latency_runs.
# prunekit.workflow.run registers prunekit.quantize's int8 step here (register_quantizer).
QUANTIZERS: Registry = Registry("quantization scheme")


def register_quantizer(scheme: str, fn: Callable[..., tuple[Any, dict[str, Any]]], *, replace: bool = False) -> None:
    """Make `QuantizeConfig(scheme=...)` run `fn` after recovery (see QUANTIZERS for its signature); a scheme
    registered already raises unless `replace`."""
    QUANTIZERS.register(scheme, fn, replace=replace)


@dataclass
class QuantizeConfig:
    """Quantization after recovery: a registered scheme (e.g. "int8") and its options."""

    scheme: str
    calib_batches: int = 8
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self, "scheme", isinstance(self.scheme, str) and self.scheme.strip() != "", "a scheme name")
        self.scheme = self.scheme.strip().lower()
        _check(self, "calib_batches", _int(self.calib_batches) and self.calib_batches >= 1, "an integer >= 1")


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "base": BaseConfig, "prune": PruneConfig,
             "recover": RecoverConfig, "quantize": QuantizeConfig}


@dataclass
class WorkflowConfig:
    """One whole run. Sub-configs may be given as dicts (as read back from JSON)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    prune: PruneConfig | None = None        # required: None is refused (a PruneConfig must name its goal)
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    quantize: QuantizeConfig | None = None
    seed: int = 0
    device: str | None = None               # default: cuda when available, else cpu
    max_steps_per_epoch: int | None = None  # cap of every training phase (quick runs)
    latency_runs: int = 30                  # timed runs per latency measurement (0: no timing)
    analyze: bool = False                   # channel-group analysis of the base (analysis.json, analyze.png)
    out: str | None = None                  # output folder (None: nothing is written)
    overwrite: bool = False                 # replace an earlier run in `out`
    progress: bool = True

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if name == "prune" and value is None:
                raise ValueError("WorkflowConfig: no prune section: give prune=PruneConfig(target=...) or "
                                 "PruneConfig(ratio=...) (--target-macs, --target-params, --target-latency, "
                                 "--target-size or --ratio)")
            if isinstance(value, dict):
                setattr(self, name, from_mapping(cls, value))
            elif not (isinstance(value, cls) or (name == "quantize" and value is None)):
                raise TypeError(f"WorkflowConfig.{name} must be a {cls.__name__} or a dict, got {type(value).__name__}")
        _check(self, "seed", _int(self.seed) and self.seed >= 0, "an integer >= 0")
        _check(self, "max_steps_per_epoch", _opt_count(self.max_steps_per_epoch, 1), "an integer >= 1 or None")
        _check(self, "latency_runs", _int(self.latency_runs) and self.latency_runs >= 0, "an integer >= 0")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError, TypeError):
                _fail(WorkflowConfig, f"device must be a torch device string (cpu, cuda, cuda:N, mps), "
                                      f"got {self.device!r}")
        if self.out is not None:
            self.out = str(self.out)
        if self.model.name is None and self.base.path is None:
            _fail(WorkflowConfig, "give model.name (--model) or base.path (--base)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the inverse of `from_dict`); live objects in `prune.options` (a validation loader
        for the auto policy, a logger) are recorded as given, not copied."""
        return {f.name: json_data(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WorkflowConfig":
        return from_mapping(cls, data)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "WorkflowConfig":
        return cls.from_dict(json.loads(text))
