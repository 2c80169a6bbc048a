"""Channel atoms and the union-find that couples them.

Every index of every parameter/buffer dimension is an *atom*. Tracing attaches to each tensor a list of
*label tensors* (int64, same rank as the tensor, each dim either full size or 1) that say which atom every
position carries. Operations union atoms that must be removed together; a connected component (root) is one
removable channel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

FIXED = 0  # reserved atom: anything joined with it may never be removed


class UnionFind:
    """Growable union-find over atom ids with per-atom flags (fixed, produced) and notes."""

    def __init__(self) -> None:
        self.parent = np.zeros(1024, dtype=np.int64)
        self.n = 1  # atom 0 == FIXED
        self.fixed = np.zeros(1024, dtype=bool)
        self.fixed[FIXED] = True
        self.produced = np.zeros(1024, dtype=bool)
        self.notes: dict[str, list[np.ndarray]] = {}  # note text -> the atom ids it was attached to
        self.fixed_reason: dict[int, str] = {FIXED: "constant"}

    def new(self, count: int) -> int:
        start = self.n
        need = self.n + count
        if need > len(self.parent):
            cap = max(need, 2 * len(self.parent))
            for name in ("parent", "fixed", "produced"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        self.parent[start:need] = np.arange(start, need)
        self.n = need
        return start

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return int(root)

    def union_pairs(self, a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> None:
        """Union a[i] with b[i] for all i (both flattened, broadcast first)."""
        a = a.reshape(-1) if isinstance(a, np.ndarray) else a.reshape(-1).numpy()
        b = b.reshape(-1) if isinstance(b, np.ndarray) else b.reshape(-1).numpy()
        if a.shape != b.shape:
            a, b = np.broadcast_arrays(a, b)
        while a.size:
            # vectorised: every root that must merge points at the smallest root it meets (parent[i] <= i holds,
            # so no cycle can form; the smaller id stays root, so FIXED (0) always wins); repeat for the pairs
            # a root taking two partners left apart
            ra, rb = self.roots(a), self.roots(b)
            todo = ra != rb
            if not todo.any():
                return
            if not todo.all():
                ra, rb, a, b = ra[todo], rb[todo], a[todo], b[todo]
            np.minimum.at(self.parent, np.maximum(ra, rb), np.minimum(ra, rb))

    def union_all(self, ids: torch.Tensor) -> None:
        flat = ids.reshape(-1)
        if flat.numel() > 1:
            uniq = torch.unique(flat)
            self.union_pairs(uniq[:1].expand(len(uniq)), uniq)

    def roots(self, ids: np.ndarray) -> np.ndarray:
        """find() of every id, vectorised: follow parents until none moves, then point each id at its root."""
        ids = np.asarray(ids, dtype=np.int64)
        parent = self.parent
        r = parent[ids]
        while True:
            up = parent[r]
            if not (up != r).any():
                break
            r = up
        self.parent[ids] = r
        return r

    def mark_fixed(self, ids: torch.Tensor, reason: str) -> None:
        uniq = np.unique(ids.reshape(-1).numpy())
        self.fixed[uniq] = True
        for u in uniq.tolist():
            self.fixed_reason.setdefault(u, reason)

    def mark_produced(self, ids: torch.Tensor) -> None:
        self.produced[ids.reshape(-1).numpy()] = True

    def note(self, ids: torch.Tensor, text: str) -> None:
        self.notes.setdefault(text, []).append(ids.reshape(-1).numpy().copy())

    def noted_roots(self) -> dict[str, np.ndarray]:
        """Per note text, the distinct roots of the atoms it was attached to (as unioned now)."""
        return {text: np.unique(self.roots(np.concatenate(ids))) for text, ids in self.notes.items()}


@dataclass
class Labels:
    """The label tensors carried by one traced tensor."""

    srcs: list[torch.Tensor] = field(default_factory=list)


def compress(src: torch.Tensor) -> torch.Tensor:
    """Shrink every dimension along which the labels are constant to size 1."""
    for d in range(src.dim()):
        if src.shape[d] > 1 and bool((src == src.narrow(d, 0, 1)).all()):
            src = src.narrow(d, 0, 1)
    return src.contiguous()


def varying_dims(src: torch.Tensor) -> list[int]:
    return [d for d in range(src.dim()) if src.shape[d] > 1]


def align(src: torch.Tensor, ndim: int) -> torch.Tensor:
    """Prepend singleton dims so src broadcasts against a tensor of rank ndim."""
    while src.dim() < ndim:
        src = src.unsqueeze(0)
    return src


def along(uf: UnionFind, src: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D labels of src along `dim`; positions that differ along other dims are unioned first."""
    dim = dim % src.dim()
    moved = src.movedim(dim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    if flat.shape[0] > 1:
        uf.union_pairs(flat, flat[:1].expand_as(flat))
    return flat[0].clone()
