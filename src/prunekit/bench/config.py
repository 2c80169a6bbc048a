"""Suite settings: one dataclass for every suite, a preset per suite and size (quick / default), and the
command-line overrides on top."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class BenchConfig:
    """What a suite runs on and with which budget. Every method of a suite shares the base, the data, the
    fine-tuning budget (finetune_epochs x at most finetune_steps optimizer steps, at finetune_lr) and the seeds.

    archs: (registry model name, width multiplier) pairs, one trained base each. targets: fractions of MACs
    kept. seeds: fine-tuning / random-criterion seeds (the base is trained once, with seed 0).
    train_samples / test_samples: seeded subsets of Fashion-MNIST's training and test images.
    opts: suite-specific settings (coarse: every, prunes; admm: rho, iterations, ...).
    """

    suite: str
    archs: list[tuple[str, float]] = field(default_factory=lambda: [("resnet20", 0.5), ("vgg11", 0.25)])
    targets: list[float] = field(default_factory=lambda: [0.5, 0.25])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_samples: int | None = 10000
    test_samples: int | None = 2000
    batch_size: int = 128
    base_epochs: int = 3
    base_lr: float = 0.1
    base_max_steps: int | None = None
    finetune_epochs: int = 1
    finetune_steps: int | None = 40
    finetune_lr: float = 0.02
    score_batches: int = 4
    latency_runs: int = 20
    latency_batches: list[int] = field(default_factory=lambda: [1, 64])
    threads: int | None = 1
    peer: bool = True
    cache_dir: str | None = None
    out: str | None = None
    quick: bool = False
    full: bool = False
    resume: bool = False
    command: str = ""
    opts: dict[str, Any] = field(default_factory=dict)

    def budget(self) -> dict[str, Any]:
        """The sizes that decide the cost, for results.md."""
        return {"size": "quick" if self.quick else "full" if self.full else "default", "dataset": self.dataset,
                "train_samples": self.train_samples, "test_samples": self.test_samples,
                "batch_size": self.batch_size, "base_epochs": self.base_epochs, "base_lr": self.base_lr,
                "base_max_steps": self.base_max_steps, "finetune_epochs": self.finetune_epochs,
                "finetune_steps_per_epoch": self.finetune_steps, "finetune_lr": self.finetune_lr,
                "seeds": list(self.seeds), "targets_macs_kept": list(self.targets),
                "archs": [f"{n} (width {w:g})" for n, w in self.archs], "torch_threads": self.threads,
                "latency_runs": self.latency_runs, **{f"opt.{k}": v for k, v in self.opts.items()}}


def opt_int(suite: str, opts: dict[str, Any], key: str, lo: int = 1) -> int:
    """The suite option `key` as an integer >= lo; anything else (2.5, "4", true) is refused by name."""
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{suite}: --opt {key}={v!r} must be an integer >= {lo}")
    return v


def opt_positive(suite: str, opts: dict[str, Any], key: str) -> float:
    """The suite option `key` as a finite number > 0 (a learning rate, a penalty)."""
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise ValueError(f"{suite}: --opt {key}={v!r} must be a number > 0")
    return float(v)


# Budget-table rows (cfg.budget() keys) of each setting a suite may or may not read (see READS in a suite).
BUDGET_ROWS: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset",), "train_samples": ("train_samples",), "test_samples": ("test_samples",),
    "batch_size": ("batch_size",), "base_epochs": ("base_epochs",), "base_lr": ("base_lr",),
    "base_max_steps": ("base_max_steps",),
    "finetune_epochs": ("finetune_epochs",), "finetune_steps": ("finetune_steps_per_epoch",),
    "finetune_lr": ("finetune_lr",), "seeds": ("seeds",), "targets": ("targets_macs_kept",), "archs": ("archs",),
    "threads": ("torch_threads",), "latency_runs": ("latency_runs",),
}


def unread_settings(module: Any, names: Iterable[str], suite: str | None = None) -> dict[str, str]:
    """{setting: why} for each of `names` (BenchConfig fields, `peer`) that the suite `module` would not read.

    A suite says it one of two ways: ``READS``, the only settings it reads (every other is unread), or
    ``NOT_READ``, {setting: reason} for the ones it leaves, with a reason of its own. The CLI refuses a flag
    that sets one of these; the suite's Budget table marks their rows "not read". `suite`: the name in the
    messages (default: the module's own)."""
    suite = suite or module.__name__.rsplit(".", 1)[-1]
    reads, own = getattr(module, "READS", None), getattr(module, "NOT_READ", {})
    out = {}
    for name in names:
        if name in own:
            out[name] = own[name]
        elif reads is not None and name not in reads:
            out[name] = (f"the {suite} suite does not read it (it reads "
                         f"{', '.join('--' + r.replace('_', '-') for r in sorted(reads))})")
    return out


def budget_not_read(module: Any, suite: str | None = None) -> dict[str, str]:
    """The Budget rows (cfg.budget() keys) of the settings `module` does not read, each with the reason."""
    return {row: why for key, why in unread_settings(module, BUDGET_ROWS, suite).items()
            for row in BUDGET_ROWS[key]}


# Quick: a tiny subset, one arch at width 0.25, one seed, one target, a few steps (tests run it, < 40 s).
QUICK_COMMON: dict[str, Any] = {
    "archs": [("resnet20", 0.25)], "targets": [0.5], "seeds": [0], "train_samples": 512, "test_samples": 256,
    "batch_size": 64, "base_epochs": 1, "base_max_steps": 4, "finetune_epochs": 1, "finetune_steps": 2,
    "score_batches": 1, "latency_runs": 3, "latency_batches": [1, 8], "quick": True,
}


# Full: the realistic budget of issue 16 (whole data set, full-width ResNet-20 and VGG-11, base 8 epochs,
# 3 whole fine-tuning epochs at lr 0.01, two seeds); hours on one core, so rows are resumable (--resume).
FULL_COMMON: dict[str, Any] = {
    "archs": [("resnet20", 1.0), ("vgg11", 1.0)], "targets": [0.25, 0.5], "seeds": [0, 1], "train_samples": None,
    "test_samples": None, "base_epochs": 8, "finetune_epochs": 3, "finetune_steps": None, "finetune_lr": 0.01,
    "full": True,
}
SIZES = ("quick", "default", "full")


def make_config(suite: str, quick: bool, presets: dict[str, dict[str, Any]], full: bool = False,
                **overrides: Any) -> BenchConfig:
    """The suite's preset ("quick", "default" or "full"), then every override that is not None."""
    if quick and full:
        raise ValueError("give either quick or full, not both")
    size = "quick" if quick else "full" if full else "default"
    base = dict(QUICK_COMMON) if quick else dict(FULL_COMMON) if full else {}
    base.update(presets.get(size, {}))
    opts = {**presets.get("opts", {}), **presets.get(f"{size}_opts", {}), **base.pop("opts", {})}
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    over_opts = overrides.pop("opts", None) or {}
    known = {k for key in ("opts", "quick_opts", "default_opts", "full_opts") for k in presets.get(key, {})}
    known |= set(presets.get("extra_opts", ()))  # options a suite reads without a preset value
    unknown = sorted(set(over_opts) - known)
    if unknown:
        raise TypeError(f"suite {suite}: unknown --opt key(s) {', '.join(map(repr, unknown))}; valid: "
                        f"{', '.join(sorted(known)) or 'none (this suite takes no --opt)'}")
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise TypeError(f"unknown bench setting {k!r}")
        base[k] = v
    return BenchConfig(suite=suite, opts={**opts, **over_opts}, **{k: v for k, v in base.items() if k != "suite"})
