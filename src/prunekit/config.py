"""The base of every config dataclass: JSON round trip, keyword building that names unknown keys, checks.

A config is a dataclass that validates itself in `__post_init__`. `to_dict()` gives plain JSON values;
`from_dict()` rejects unknown keys; `from_kwargs()` is what keyword entry points call, so a misspelt keyword
raises TypeError naming it and listing the valid ones. Fields in `RUNTIME` hold live objects (callables,
loaders, loggers): `to_dict()` records that one was given, and `from_dict()` refuses such a record (pass the
object again) rather than silently dropping it.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from typing import Any, Callable, ClassVar, Iterable, Mapping, TypeVar

C = TypeVar("C", bound="Config")
GIVEN = "<given; not serialisable>"


def unknown_keywords(where: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise TypeError naming every key of `given` not in `valid`, with the valid ones (and near misses)."""
    valid = sorted(set(valid))
    bad = [k for k in given if k not in valid]
    if not bad:
        return
    hints = []
    for k in bad:
        near = difflib.get_close_matches(k, valid, n=1, cutoff=0.6)
        hints.append(f"{k!r} (did you mean {near[0]!r}?)" if near else repr(k))
    raise TypeError(f"{where} got unexpected keyword argument(s) {', '.join(hints)}; "
                    f"valid keywords: {', '.join(valid) or '(none)'}")


def changed_fields(obj: Any, names: Iterable[str]) -> list[str]:
    """`name=value` for each dataclass field in `names` of `obj` whose value is not the field's default (a
    setting given to its default value cannot be told from one not given)."""
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    return [f"{n}={getattr(obj, n)!r}" for n in names if getattr(obj, n) != defaults[n]]


def json_data(value: Any) -> Any:
    """`value` as JSON data: configs and dataclasses as dicts, tuples as lists, paths as text, live objects as
    GIVEN. For settings; measured values (tensors, numpy, non-finite floats) go through report.to_jsonable."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Config):
        return value.to_dict()
    if hasattr(value, "items") and callable(value.items) and type(value).__name__ == "Target":
        return value.items()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_data(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    # a live object (a function, a loader, a module): its repr says where it lived, not what it was
    return GIVEN if callable(value) or " at 0x" in text else text


class Config:
    """Mixin for config dataclasses (see the module docstring)."""

    RUNTIME: ClassVar[tuple[str, ...]] = ()
    CONVERT: ClassVar[dict[str, Callable[[Any], Any]]] = {}  # field -> JSON value to field value

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON data; a runtime object that was given is recorded as given."""
        out = {}
        for name in self.field_names():
            v = getattr(self, name)
            out[name] = (GIVEN if v is not None else None) if name in self.RUNTIME else json_data(v)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """The config a `to_dict()` describes; unknown keys raise TypeError, a given runtime object ValueError."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
        unknown_keywords(f"{cls.__name__}.from_dict", data, cls.field_names())
        kw = {}
        for k, v in data.items():
            if k in cls.RUNTIME and v is not None:
                raise ValueError(f"{cls.__name__}.{k} holds an object that was not serialised; pass it again")
            kw[k] = cls.CONVERT[k](v) if k in cls.CONVERT and v is not None else v
        return cls(**kw)

    @classmethod
    def from_kwargs(cls: type[C], where: str, kwargs: Mapping[str, Any]) -> C:
        """Build from keywords; any keyword that is not a field raises TypeError naming it."""
        unknown_keywords(where, kwargs, cls.field_names())
        return cls(**kwargs)

    @classmethod
    def resolve(cls: type[C], where: str, config: Any, kwargs: Mapping[str, Any]) -> C:
        """What an entry point taking ``config=None, **options`` runs with: `config` (checked to be this type,
        or a dict of one), or the config `from_kwargs` builds from the options; both given raise TypeError."""
        if config is None:
            return cls.from_kwargs(where, kwargs)
        if kwargs:
            raise TypeError(f"{where} got config= and keyword options {sorted(kwargs)}; give one of them")
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        if not isinstance(config, cls):
            raise TypeError(f"{where} is configured by {cls.__name__}, got {type(config).__name__}")
        return config

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with `changes` (unknown fields raise TypeError naming them)."""
        unknown_keywords(f"{type(self).__name__}.replace", changes, self.field_names())
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclasses.dataclass
class NoOptions(Config):
    """The config of something without knobs: any keyword is an error."""


# ----------------------------------------------------------------------------- checks for __post_init__
def check_int(where: str, name: str, value: Any, lo: int | None = None, hi: int | None = None,
              optional: bool = False) -> None:
    """`value` is an int (not a bool) within [lo, hi]; None allowed when `optional`."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" if lo is not None else f"<= {hi}"
        raise ValueError(f"{where}: {name}={value} must be {span}")


def check_float(where: str, name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> None:
    """`value` is a finite real number within the interval (open or closed at each end)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{where}: {name} must be a finite number, got {value!r}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{where}: {name}={value} must lie in {left}{'-inf' if lo is None else lo}, "
                         f"{'inf' if hi is None else hi}{right}")


def check_choice(where: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{where}: {name}={value!r}; choose one of: {', '.join(map(repr, choices))}")


def check_bool(where: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
