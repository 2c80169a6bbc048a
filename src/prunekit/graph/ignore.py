"""What `ignore=` may hold, checked before tracing: every entry must match something in the model.

Entries are module names, state_dict keys (or a prefix ending at a `.`), module types, module objects or
predicates `fn(module, name) -> bool`. A single string (or type, module, predicate) is one entry, never
iterated. A name, type or module that matches nothing raises ValueError naming it and the nearest names, so
a typo cannot leave the layer it meant to protect prunable.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

from torch import nn

def as_entries(ignore: Any) -> list[Any]:
    """`ignore` as a list of entries: None -> [], a single entry -> [it], any other iterable -> its items."""
    if ignore is None:
        return []
    if isinstance(ignore, (str, type, nn.Module)) or callable(ignore):
        return [ignore]
    if isinstance(ignore, Iterable):
        return list(ignore)
    raise TypeError(f"ignore= takes module names, state_dict keys, module types, modules or predicates, "
                    f"got {type(ignore).__name__}")


def _name_matches(item: str, names: Iterable[str]) -> bool:
    return any(n == item or n.startswith(item + ".") for n in names)


def resolve_ignore(model: nn.Module, ignore: Any) -> list[Any]:
    """The checked list of ignore entries for `model` (see the module docstring)."""
    entries = as_entries(ignore)
    modules = dict(model.named_modules())
    keys = list(model.state_dict().keys())
    names = [n for n in modules if n] + keys
    for item in entries:
        if isinstance(item, str):
            if not item or not _name_matches(item, names):
                near = difflib.get_close_matches(item, names, n=3, cutoff=0.5)
                hint = f"; nearest names: {', '.join(near)}" if near else ""
                raise ValueError(f"ignore entry {item!r} matches no module name or state_dict key of "
                                 f"{type(model).__name__}{hint}")
        elif isinstance(item, type):
            if not any(isinstance(m, item) for m in modules.values()):
                raise ValueError(f"ignore entry {item.__name__} matches no module of {type(model).__name__}")
        elif isinstance(item, nn.Module):
            if not any(m is item for m in modules.values()):
                raise ValueError(f"ignore entry {type(item).__name__} module object is not a submodule of "
                                 f"{type(model).__name__}")
        elif not callable(item):
            raise TypeError(f"ignore entry {item!r}: give a module name, state_dict key, module type, module "
                            f"or a predicate fn(module, name)")
    return entries
