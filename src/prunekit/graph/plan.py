"""PruningPlan: which channels of which group are kept. A JSON-able decision, separate from surgery."""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from ..errors import PlanFormatError
from ..utils.fileio import atomic_write
from .groups import ChannelGroup, DependencyGraph, Member
from .plan_schema import PLAN_VERSION, members_digest, model_identity, plan_digest, validate_plan_dict

__all__ = ["GroupDecision", "PLAN_VERSION", "PlanFormatError", "PruningPlan", "model_identity"]


@dataclass
class GroupDecision:
    name: str
    size: int
    kept: list[int]
    members: list[Member]
    notes: list[str] = field(default_factory=list)

    @property
    def removed(self) -> list[int]:
        keep = set(self.kept)
        return [c for c in range(self.size) if c not in keep]


@dataclass
class PruningPlan:
    """Per group, the kept channel indices, plus everything needed to replay it on a fresh model."""

    decisions: list[GroupDecision] = field(default_factory=list)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # original shapes of touched tensors
    patches: list[dict] = field(default_factory=list)  # attribute updates (e.g. head_dim) per module
    meta: dict = field(default_factory=dict)
    identity: dict | None = None  # model_identity() of the model the plan was made for

    @classmethod
    def from_kept(cls, graph: DependencyGraph, kept: dict[str, list[int]], meta: dict | None = None,
                  member_digests: bool = True) -> "PruningPlan":
        """Build a plan from {group name: kept channel indices}; groups not named keep everything.

        `member_digests=False` leaves out the per-group member digests of ``identity["groups"]`` (the model's
        identity is still recorded): for throw-away plans applied straight to a copy of the traced model, such as
        the forward probes, where a hand edit cannot happen and the digests would cost a hash per group twice."""
        decisions = []
        touched = set()
        for g in graph.groups:
            if g.name not in kept:
                continue
            k = sorted(int(i) for i in kept[g.name])
            if len(set(k)) != len(k):
                raise PlanFormatError(f"group {g.name!r}: duplicate kept indices "
                                      f"{sorted({i for i in k if k.count(i) > 1})[:5]}")
            _check_kept(g, k)
            if len(k) == g.size:
                continue
            decisions.append(GroupDecision(g.name, g.size, k, g.members, list(g.notes)))
            touched.update(m.key for m in g.members)
        identity = None
        if graph.shapes:
            identity = model_identity(graph.shapes)
            if member_digests:
                identity["groups"] = {d.name: members_digest(d.members) for d in decisions}
        plan = cls(decisions=decisions, shapes={k: list(graph.shapes[k]) for k in sorted(touched)},
                   meta=dict(meta or {}), identity=identity)
        plan.patches = _split_patches(graph, {d.name: set(d.kept) for d in decisions})
        return plan

    def is_empty(self) -> bool:
        return not any(d.removed for d in self.decisions)

    def removals(self) -> list[tuple[str, int, list[int]]]:
        """Every tensor slice the plan removes: [(state_dict key, dim, sorted removed indices)]."""
        acc: dict[tuple[str, int], set[int]] = {}
        for d in self.decisions:
            rem = d.removed
            if not rem:
                continue
            pick = itemgetter(*rem)  # the removed channels' position lists, gathered in C
            for m in d.members:
                lists = pick(m.index)
                pos = list(chain.from_iterable(lists if len(rem) > 1 else (lists,)))
                if pos:
                    acc.setdefault((m.key, m.dim), set()).update(pos)
        return [(k, dim, sorted(v)) for (k, dim), v in sorted(acc.items())]

    def kept(self) -> dict[str, list[int]]:
        return {d.name: list(d.kept) for d in self.decisions}

    def summary(self) -> dict:
        return {d.name: {"size": d.size, "kept": len(d.kept)} for d in self.decisions}

    @property
    def exact(self) -> bool:
        return not any(d.notes for d in self.decisions if d.removed)

    def reasons(self) -> list[str]:
        return sorted({n for d in self.decisions if d.removed for n in d.notes})

    # -- JSON
    def to_dict(self) -> dict:
        data = {
            "version": PLAN_VERSION,
            "meta": self.meta,
            "shapes": self.shapes,
            "patches": self.patches,
            "groups": [
                {"name": d.name, "size": d.size, "kept": d.kept, "notes": d.notes,
                 "members": [{"key": m.key, "dim": m.dim, "module": m.module, "role": m.role,
                              "index": m.index} for m in d.members]}
                for d in self.decisions
            ],
        }
        if self.identity is not None:
            data["identity"] = copy.deepcopy(self.identity)
        return data

    def to_json(self, indent: int | None = None) -> str:
        """The plan as JSON, with a "sha256" of its content that :meth:`from_json` verifies."""
        data = json.loads(json.dumps(self.to_dict()))  # the digest is of what a reader will parse
        return json.dumps({**data, "sha256": plan_digest(data)}, indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "PruningPlan":
        """A plan from its dict form, checked against the schema (docs/plan-format.md).

        Raises:
            PlanFormatError: naming the first field that breaks the schema.
        """
        validate_plan_dict(data)
        if "sha256" in data:
            stored, data = data["sha256"], {k: v for k, v in data.items() if k != "sha256"}
            if plan_digest(data) != stored:
                raise PlanFormatError("plan field sha256 does not match the plan's content: the plan changed after "
                                      "it was written (corrupted; if you edited it on purpose, delete the sha256 field)")
        decisions = []
        for g in data["groups"]:
            members = [Member(m["key"], m["dim"], [list(r) for r in m["index"]], m.get("module", ""),
                              m.get("role", "other")) for m in g["members"]]
            decisions.append(GroupDecision(g["name"], g["size"], list(g["kept"]), members, list(g.get("notes", []))))
        ident = data.get("identity")
        return cls(decisions=decisions, shapes={k: list(v) for k, v in data.get("shapes", {}).items()},
                   patches=[dict(p) for p in data.get("patches", [])], meta=dict(data.get("meta", {})),
                   identity=copy.deepcopy(ident) if ident is not None else None)

    @classmethod
    def from_json(cls, text: str | bytes) -> "PruningPlan":
        """A plan from JSON text (see :meth:`load` for a file)."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise PlanFormatError(f"plan JSON must be text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlanFormatError(f"plan is not valid JSON: {e}") from e
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PruningPlan":
        """Read a plan file written by :meth:`save` (or ``prunekit prune``'s plan.json).

        Example:
            >>> plan = PruningPlan.load("runs/prune/plan.json")  # doctest: +SKIP
        """
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a plan file (a run folder holds plan.json)")
        if not path.is_file():
            raise FileNotFoundError(f"no such plan file: {path}")
        try:
            return cls.from_json(path.read_bytes())
        except PlanFormatError as e:
            raise PlanFormatError(f"{path}: {e}") from e

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the plan as JSON, atomically; an existing file is replaced only with ``overwrite=True``."""
        return atomic_write(path, self.to_json(indent=1) + "\n", overwrite=overwrite)


def _check_kept(g: ChannelGroup, kept: list[int]) -> None:
    if not kept:
        raise ValueError(f"plan would remove every channel of group {g.name!r}")
    bad = [i for i in kept if i < 0 or i >= g.size]
    if bad:
        raise ValueError(f"group {g.name!r} has {g.size} channels; kept indices out of range: {bad[:5]}")
    removed = set(range(g.size)) - set(kept)
    fixed = removed - set(g.candidates)
    if removed and not g.prunable:
        raise ValueError(f"group {g.name!r} may not be pruned: {g.reason}")
    if fixed:
        raise ValueError(f"group {g.name!r}: channels {sorted(fixed)[:5]} are pinned ({g.reason})")


def _split_patches(graph: DependencyGraph, kept: dict[str, set[int]]) -> list[dict]:
    """For views that split a dim (heads x head_dim), the new inner size of each module's split."""
    if not graph.splits:
        return []
    split_roots = graph.split_root_arrays()
    size = 1 + max([max(graph.root_of, default=0)] + [int(a.max()) for a in split_roots if a.size])
    alive = np.ones(size, dtype=np.int64)  # 1 for each root that stays: untouched groups and kept channels
    touched = np.zeros(size, dtype=bool)  # roots of the groups the plan names
    for r, (gname, c) in graph.root_of.items():
        if gname in kept:
            touched[r] = True
            alive[r] = c in kept[gname]
    patches = []
    for s, roots in zip(graph.splits, split_roots):  # each root is one position of the split's inner size
        new = int(alive[roots].sum())
        if bool(touched[roots].any()) and new != s["inner"]:
            patches.append({"module": s["module"], "old": s["inner"], "new": new, "factors": s["factors"],
                            "kind": s.get("kind", "split")})
    return patches
