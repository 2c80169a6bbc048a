"""The plan JSON schema (docs/plan-format.md), checked field by field: every error names its field."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from ..errors import PlanFormatError

PLAN_VERSION = 1
TOP_FIELDS = {"version", "meta", "shapes", "patches", "groups", "identity", "sha256"}
GROUP_FIELDS = {"name", "size", "kept", "notes", "members"}
MEMBER_FIELDS = {"key", "dim", "module", "role", "index"}
PATCH_FIELDS = {"module", "old", "new", "factors", "kind"}


def model_identity(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """What identifies the model a plan was made for: the number of floating-point state tensors and a SHA-256
    of every (state_dict key, shape) pair. Another architecture (resnet32 for a resnet20 plan), another
    width or an already pruned model gives another identity even where the plan's own tensors match."""
    items = sorted((k, [int(s) for s in v]) for k, v in shapes.items())
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    return {"tensors": len(items), "sha256": digest}


def members_digest(members: Sequence[Any]) -> str:
    """16 hex digits of SHA-256 over a group's members (state_dict key, dim, channel positions), sorted: what
    the tracer found sharing the group's channels. A plan records it per group so that a hand edit that drops
    or changes a member (the group would no longer cut every tensor sharing its channels) is caught."""
    h = hashlib.sha256()
    for m in sorted(members, key=lambda m: (m.key, int(m.dim))):  # numpy bytes: ~15x faster than JSON here
        h.update(f"{m.key}\0{int(m.dim)}\0{len(m.index)}\0".encode())
        h.update(np.fromiter(map(len, m.index), np.int64, len(m.index)).tobytes())
        h.update(np.fromiter(chain.from_iterable(m.index), np.int64).tobytes())
    return h.hexdigest()[:16]


def plan_digest(data: dict) -> str:
    """Hex SHA-256 of a plan dict's content (keys sorted, no whitespace), stored as "sha256" in plan JSON."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _int(v: Any, field: str, lo: int | None = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise PlanFormatError(f"plan field {field} must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise PlanFormatError(f"plan field {field} must be >= {lo}, got {v}")
    return v


def _str(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise PlanFormatError(f"plan field {field} must be a string, got {v!r}")
    return v


def _list(v: Any, field: str) -> list:
    if not isinstance(v, list):
        raise PlanFormatError(f"plan field {field} must be a list, got {type(v).__name__}")
    return v


def _hex(v: Any, field: str, digits: int) -> str:
    v = _str(v, field)
    if len(v) != digits or any(c not in "0123456789abcdef" for c in v):
        raise PlanFormatError(f"plan field {field} must be {digits} lowercase hex digits, got {v[:70]!r}")
    return v


def _obj(v: Any, field: str, allowed: set[str] | None = None, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(v, dict):
        raise PlanFormatError(f"plan field {field} must be a JSON object, got {type(v).__name__}")
    if allowed is not None:
        extra = sorted(set(v) - allowed)
        if extra:
            raise PlanFormatError(f"plan field {field} has unknown entries {extra}; valid: {sorted(allowed)}")
    for r in required:
        if r not in v:
            raise PlanFormatError(f"plan field {field}.{r} is missing")
    return v


def check_kept(kept: Any, size: int, field: str) -> list[int]:
    """A kept list: non-empty, integers in 0..size-1, strictly increasing (no duplicates, no reordering)."""
    kept = _list(kept, field)
    if not kept:
        raise PlanFormatError(f"plan field {field} is empty: a group cannot lose every channel")
    if all(type(c) is int for c in kept) and 0 <= kept[0] and kept[-1] < size and all(
            a < b for a, b in zip(kept, kept[1:])):
        return kept  # plain ints, strictly increasing, in range: what every plan prunekit makes holds
    for i, c in enumerate(kept):
        _int(c, f"{field}[{i}]", lo=None)
    bad = [c for c in kept if c < 0 or c >= size]
    if bad:
        raise PlanFormatError(f"plan field {field}: kept index out of range 0..{size - 1}: {bad[:5]}")
    dup = sorted({c for c in kept if kept.count(c) > 1}) if len(set(kept)) != len(kept) else []
    if dup:
        raise PlanFormatError(f"plan field {field}: duplicate kept indices {dup[:5]}")
    if any(a > b for a, b in zip(kept, kept[1:])):
        raise PlanFormatError(f"plan field {field} must be in increasing order (kept channels keep their order), "
                              f"got {kept[:8]}")
    return kept


def _check_member(m: Any, size: int, field: str, shapes: dict) -> None:
    m = _obj(m, field, MEMBER_FIELDS, ("key", "dim", "index"))
    key = _str(m["key"], f"{field}.key")
    dim = _int(m["dim"], f"{field}.dim")
    for k in ("module", "role"):
        if k in m:
            _str(m[k], f"{field}.{k}")
    index = _list(m["index"], f"{field}.index")
    if len(index) != size:
        raise PlanFormatError(f"plan field {field}.index has {len(index)} entries for a group of {size} channels")
    limit = None
    if key in shapes:
        if dim >= len(shapes[key]):
            raise PlanFormatError(f"plan field {field}.dim = {dim}, but shapes[{key!r}] has {len(shapes[key])} dims")
        limit = shapes[key][dim]
    for c, pos in enumerate(index):
        for j, p in enumerate(_list(pos, f"{field}.index[{c}]")):
            _int(p, f"{field}.index[{c}][{j}]")
            if limit is not None and p >= limit:
                raise PlanFormatError(f"plan field {field}.index[{c}][{j}] = {p} is out of range for dim {dim} of "
                                      f"{key!r} (size {limit})")


def _check_group(g: Any, field: str, shapes: dict) -> None:
    g = _obj(g, field, GROUP_FIELDS, ("name", "size", "kept", "members"))
    _str(g["name"], f"{field}.name")
    size = _int(g["size"], f"{field}.size", lo=1)
    check_kept(g["kept"], size, f"{field}.kept")
    for i, n in enumerate(_list(g.get("notes", []), f"{field}.notes")):
        _str(n, f"{field}.notes[{i}]")
    members = _list(g["members"], f"{field}.members")
    if not members:
        raise PlanFormatError(f"plan field {field}.members is empty: the group touches no tensor")
    for i, m in enumerate(members):
        _check_member(m, size, f"{field}.members[{i}]", shapes)


def _check_patch(p: Any, field: str) -> None:
    p = _obj(p, field, PATCH_FIELDS, ("module", "old", "new", "factors"))
    _str(p["module"], f"{field}.module")
    _int(p["old"], f"{field}.old")
    _int(p["new"], f"{field}.new")
    for i, f in enumerate(_list(p["factors"], f"{field}.factors")):
        _int(f, f"{field}.factors[{i}]", lo=1)
    if "kind" in p:
        _str(p["kind"], f"{field}.kind")


def validate_plan_dict(data: Any) -> None:
    """Raise PlanFormatError naming the first field of ``data`` that breaks the plan schema."""
    if not isinstance(data, dict) or "groups" not in data:
        raise PlanFormatError("not a prunekit plan: expected a JSON object with a 'groups' list")
    _obj(data, "(top level)", TOP_FIELDS)
    version = _int(data.get("version", PLAN_VERSION), "version", lo=1)
    if version > PLAN_VERSION:
        raise PlanFormatError(f"plan field version = {version} is newer than this prunekit reads ({PLAN_VERSION})")
    _obj(data.get("meta", {}), "meta")
    shapes = _obj(data.get("shapes", {}), "shapes")
    for k, v in shapes.items():
        for i, s in enumerate(_list(v, f"shapes[{k!r}]")):
            _int(s, f"shapes[{k!r}][{i}]")
    if "identity" in data:
        ident = _obj(data["identity"], "identity", {"tensors", "sha256", "groups"}, ("tensors", "sha256"))
        _int(ident["tensors"], "identity.tensors")
        _hex(ident["sha256"], "identity.sha256", 64)
        for name, dig in _obj(ident.get("groups", {}), "identity.groups").items():
            _hex(dig, f"identity.groups[{name!r}]", 16)
    if "sha256" in data:
        _str(data["sha256"], "sha256")
    for i, p in enumerate(_list(data.get("patches", []), "patches")):
        _check_patch(p, f"patches[{i}]")
    names = set()
    for i, g in enumerate(_list(data["groups"], "groups")):
        _check_group(g, f"groups[{i}]", shapes)
        if g["name"] in names:
            raise PlanFormatError(f"plan field groups[{i}].name: group {g['name']!r} appears twice")
        names.add(g["name"])
