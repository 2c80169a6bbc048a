"""Method configs: what to plan (PlanConfig), how to recover (Recovery) and each method's own knobs.

Every method takes one config dataclass (`OneshotConfig`, `AdmmConfig`, ...), each a `MethodConfig`: a
`plan` (PlanConfig: target or ratio, criterion, policy, guards, tracer options, seed) and a `recovery`
(Recovery: fine-tuning, distillation, from scratch). The keyword form `oneshot(model, loader, ratio=0.3,
lr=0.05)` builds that config: plan fields, Recovery fields and the method's own fields are told apart by
name, `seed` seeds both, and any other keyword raises TypeError listing the valid ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from ..config import Config, changed_fields, check_bool, check_float, check_int, unknown_keywords
from ..planning import TRACE_KEYS, PlanConfig
from ..train import TrainConfig

ALIASES = {"criterion_kw": "criterion_kwargs", "policy_kw": "policy_kwargs"}


def _train_config(d: Any) -> TrainConfig:
    if isinstance(d, TrainConfig):
        return d
    unknown_keywords("TrainConfig", d, [f.name for f in dataclasses.fields(TrainConfig)])
    return TrainConfig(**d)


# Recovery settings read only in one mode -> the switch of that mode (Recovery and workflow.RecoverConfig)
MODE_SETTINGS = {"temperature": "distill", "distill_weight": "distill", "scratch_epochs": "from_scratch",
                 "scratch_lr": "from_scratch"}


def unread_mode_settings(cfg: Any) -> str:
    """The settings of `cfg` (a recovery config) that its switched-off modes would record but never read, as
    one message; "" when there are none."""
    unread = [f"{x} needs {switch}=True" for name, switch in MODE_SETTINGS.items()
              if hasattr(cfg, name) and not getattr(cfg, switch) for x in changed_fields(cfg, (name,))]
    return f"{'; '.join(unread)} (a setting that would not be read is refused, not ignored)" if unread else ""


@dataclass
class Recovery(Config):
    """How a method recovers accuracy after pruning, and the training settings it shares.

    finetune_epochs / lr: the fine-tuning budget. distill: add knowledge distillation from the unpruned model
    (temperature, distill_weight = alpha of DistillationLoss). from_scratch: re-initialise the pruned
    architecture (seeded by `seed`) and train it for scratch_epochs (default finetune_epochs) at scratch_lr
    (default 10 x lr) instead of fine-tuning: the control of "Rethinking the Value of Network Pruning" (Liu
    et al. 2019). train_config: every other TrainConfig field (optimizer, weight decay, ...); epochs, lr and
    seed are set per phase. max_steps_per_epoch caps every phase (quick runs). log: where epoch lines go.
    """

    RUNTIME: ClassVar[tuple[str, ...]] = ("log",)
    CONVERT: ClassVar[dict[str, Callable[[Any], Any]]] = {"train_config": _train_config}

    finetune_epochs: int = 1
    lr: float = 0.01
    train_config: TrainConfig | None = None
    max_steps_per_epoch: int | None = None
    distill: bool = False
    temperature: float = 4.0
    distill_weight: float = 0.5
    from_scratch: bool = False
    scratch_epochs: int | None = None
    scratch_lr: float | None = None
    device: Any = None
    log: Callable[[str], None] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        w = "Recovery"
        check_int(w, "finetune_epochs", self.finetune_epochs, lo=0)
        check_float(w, "lr", self.lr, 0.0, None, lo_open=True)
        if self.train_config is not None and not isinstance(self.train_config, TrainConfig):
            raise TypeError(f"{w}: train_config must be a TrainConfig, got {type(self.train_config).__name__}")
        check_int(w, "max_steps_per_epoch", self.max_steps_per_epoch, lo=1, optional=True)
        check_bool(w, "distill", self.distill)
        check_float(w, "temperature", self.temperature, 0.0, None, lo_open=True)
        check_float(w, "distill_weight", self.distill_weight, 0.0, 1.0)
        check_bool(w, "from_scratch", self.from_scratch)
        check_int(w, "scratch_epochs", self.scratch_epochs, lo=0, optional=True)
        check_float(w, "scratch_lr", self.scratch_lr, 0.0, None, lo_open=True, optional=True)
        check_int(w, "seed", self.seed)
        if self.device is not None and not isinstance(self.device, str):
            self.device = str(self.device)
        unread = unread_mode_settings(self)
        if unread:
            raise ValueError(f"{w}: {unread}")

    def config(self, epochs: int, lr: float, **over: Any) -> TrainConfig:
        """The TrainConfig of one phase: train_config's settings with this phase's epochs, lr and seed."""
        base = self.train_config or TrainConfig(progress=True, verbose=self.log is not None)
        fields = {"epochs": int(epochs), "lr": float(lr), "seed": self.seed, **over}
        if self.max_steps_per_epoch is not None and "max_steps_per_epoch" not in over:
            fields["max_steps_per_epoch"] = self.max_steps_per_epoch
        return dataclasses.replace(base, **fields)


def _plan(d: Any) -> PlanConfig:
    return d if isinstance(d, PlanConfig) else PlanConfig.from_dict(d)


def _recovery(d: Any) -> Recovery:
    return d if isinstance(d, Recovery) else Recovery.from_dict(d)


@dataclass
class MethodConfig(Config):
    """The part every method config shares: the plan to reach and the recovery after it."""

    CONVERT: ClassVar[dict[str, Callable[[Any], Any]]] = {"plan": _plan, "recovery": _recovery}
    PLAN_DEFAULTS: ClassVar[dict[str, Any]] = {}  # the method's own criterion / policy defaults

    plan: PlanConfig = field(default_factory=PlanConfig)
    recovery: Recovery = field(default_factory=Recovery)

    def __post_init__(self) -> None:
        if not isinstance(self.plan, PlanConfig):
            raise TypeError(f"{type(self).__name__}.plan must be a PlanConfig, got {type(self.plan).__name__}")
        if not isinstance(self.recovery, Recovery):
            raise TypeError(f"{type(self).__name__}.recovery must be a Recovery, got {type(self.recovery).__name__}")
        if self.plan.target is None and not self.plan.ratio:
            raise ValueError(f"{type(self).__name__}: give a target (pk.Target(macs=0.5), a dict) or a ratio > 0")

    @classmethod
    def own_fields(cls) -> list[str]:
        return [n for n in cls.field_names() if n not in ("plan", "recovery")]

    @classmethod
    def valid_keywords(cls) -> list[str]:
        plan = [n for n in PlanConfig.field_names() if n not in ("criterion_kwargs", "policy_kwargs")]
        return sorted({*plan, *ALIASES, "criterion_kwargs", "policy_kwargs", "trace_kw",
                       *Recovery.field_names(), *cls.own_fields()})

    @classmethod
    def from_keywords(cls, where: str, kwargs: dict[str, Any]) -> "MethodConfig":
        """The config the keyword form describes (see the module docstring); unknown keywords raise."""
        unknown_keywords(where, kwargs, cls.valid_keywords())
        kw = {ALIASES.get(k, k): v for k, v in kwargs.items()}
        for k in ("criterion", "policy"):
            if kw.get(k, "") is None:
                del kw[k]  # None: the method's default
        trace_kw = kw.pop("trace_kw", None) or {}
        unknown_keywords(f"{where} trace_kw", trace_kw, TRACE_KEYS)
        clash = sorted(set(trace_kw) & set(kw))
        if clash:
            raise TypeError(f"{where}: {clash} given both directly and in trace_kw")
        kw.update(trace_kw)
        plan_names, rec_names = set(PlanConfig.field_names()), set(Recovery.field_names())
        plan = {**cls.PLAN_DEFAULTS, **{k: v for k, v in kw.items() if k in plan_names}}
        rec = {k: v for k, v in kw.items() if k in rec_names}
        own = {k: v for k, v in kw.items() if k not in plan_names and k not in rec_names}
        return cls(plan=PlanConfig(**plan), recovery=Recovery(**rec), **own)

    @classmethod
    def from_kwargs(cls, where: str, kwargs: Mapping[str, Any]) -> "MethodConfig":
        """The keyword form (what `resolve` builds from options): `from_keywords`."""
        return cls.from_keywords(where, dict(kwargs))
