"""One registry type for everything looked up by name (criteria, policies, methods, weight criteria, models).

Names are matched case-insensitively with `-` and `_` treated alike ("Group-Lasso" finds "group_lasso"); the
name an entry was registered under is the one listed. An entry may carry the config dataclass it is configured
with (torchao style: the config type says which knobs exist), so a misspelt knob raises instead of vanishing.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


def normalize_key(name: str) -> str:
    """The lookup form of a registry name: stripped, lower case, `-` as `_`."""
    if not isinstance(name, str):
        raise TypeError(f"a registry name must be a string, got {type(name).__name__}")
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object, the name it was registered under and its config type (None: no knobs)."""

    name: str
    obj: T
    config: type | None = None


class Registry(Mapping[str, T]):
    """A name -> object mapping with one key normalisation and errors that list the valid names.

    It reads like a dict of the registered names (`sorted(REG)`, `REG["name"]`, `"name" in REG`).

    Example:
        >>> METRICS = Registry("metric")
        >>> @METRICS.register("top-1")
        ... def top1(): ...
        >>> METRICS["TOP_1"] is top1
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, *, config: type | None = None,
                 replace: bool = False) -> Callable[[T], T] | T:
        """Register `obj` under `name` (as a decorator when `obj` is omitted); a taken name raises."""

        def add(o: T) -> T:
            key = normalize_key(name)
            if key in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered "
                                 f"(as {self._entries[key].name!r}); pass replace=True to replace it")
            self._entries[key] = Entry(name.strip(), o, config)
            return o

        return add if obj is None else add(obj)

    def entry(self, name: str) -> Entry[T]:
        """The entry registered as `name`; an unknown name raises ValueError listing the registered ones."""
        key = normalize_key(name)
        if key not in self._entries:
            near = difflib.get_close_matches(key, list(self._entries), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(self._entries[k].name for k in near)}?)" if near else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}")
        return self._entries[key]

    def copy(self) -> "Registry[T]":
        """An independent registry with the same entries (registering in one leaves the other as it is)."""
        out: Registry[T] = Registry(self.kind)
        out._entries = dict(self._entries)
        return out

    def config_type(self, name: str) -> type | None:
        return self.entry(name).config

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(e.name for e in self._entries.values())

    def __getitem__(self, name: str) -> T:
        try:
            return self.entry(name).obj
        except ValueError as e:
            raise KeyError(str(e)) from None

    def __contains__(self, name: Any) -> bool:
        return isinstance(name, str) and normalize_key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
