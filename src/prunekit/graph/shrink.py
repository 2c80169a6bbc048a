"""Following a model through prunes: the graph of the pruned model derived from the graph of the original."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from .groups import DependencyGraph
    from .plan import PruningPlan


def shrink(graph: DependencyGraph, plan: PruningPlan, model: nn.Module | None = None) -> DependencyGraph:
    """The graph of the model after `plan`, without tracing again (no forward pass): same group names, channels
    and tensor positions renumbered, split views (flatten widths, heads x head_dim) shrunk to the kept roots."""
    unknown = sorted({s.get("kind", "split") for s in graph.splits} - {"split", "width", "heads"})
    if unknown:
        raise ValueError(f"cannot follow views of kind {unknown} through a prune; trace the pruned model again")
    removed: dict[tuple[str, int], set[int]] = {(k, d): set(ix) for k, d, ix in plan.removals()}
    remap: dict[tuple[str, int], dict[int, int]] = {}
    for (key, dim), gone in removed.items():
        keep = [i for i in range(graph.shapes[key][dim]) if i not in gone]
        remap[(key, dim)] = {old: new for new, old in enumerate(keep)}
    kept = plan.kept()
    groups = []
    newidx: dict[str, dict[int, int]] = {}
    for g in graph.groups:
        k = kept.get(g.name, list(range(g.size)))
        newidx[g.name] = {c: i for i, c in enumerate(k)}
        cand = set(g.candidates)
        members = []
        for m in g.members:
            r = remap.get((m.key, m.dim))
            index = [list(m.index[c]) if r is None else [r[p] for p in m.index[c]] for c in k]
            members.append(dataclasses.replace(m, index=index))
        new = dataclasses.replace(g, size=len(k), members=members,
                                  candidates=[i for i, c in enumerate(k) if c in cand])
        if g.roots:
            new.roots = [g.roots[c] for c in k]
        groups.append(new)
    shapes = {key: tuple(s) for key, s in graph.shapes.items()}
    for (key, dim), gone in removed.items():
        s = list(shapes[key])
        s[dim] -= len(gone)
        shapes[key] = tuple(s)
    root_of = {r: (gname, newidx[gname][c]) for r, (gname, c) in graph.root_of.items()
               if c in newidx.get(gname, {})}
    splits = []
    for s in graph.splits:
        old_of = graph.root_of
        roots = [r for r in s["roots"] if r not in old_of or r in root_of]
        factors = [len(roots), s["factors"][-1]] if s.get("kind") == "heads" else list(s["factors"][:-1]) + [len(roots)]
        splits.append({**s, "roots": roots, "inner": len(roots), "factors": factors})
    return dataclasses.replace(graph, model=model if model is not None else graph.model, groups=groups,
                               splits=splits, shapes=shapes, macs_by_key=dict(graph.macs_by_key),
                               param_keys=list(graph.param_keys), root_of=root_of,
                               output_shapes=None)  # pruned outputs (prune_outputs=True) may be narrower
