"""Resumable suite rows: every finished run is appended to `rows.jsonl` in the suite folder as soon as it ends,
so a long suite can be stopped and continued (`--resume`) across sessions. The file's first line records the
suite's budget; a resume with other settings is refused instead of mixing rows of two budgets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import to_jsonable
from ..workflow import register_output_names
from .config import BenchConfig

ROWS_FILE = "rows.jsonl"
register_output_names(ROWS_FILE)  # --overwrite removes it with the rest of a suite folder

RowKey = tuple[Any, ...]


class ResumeMismatchError(ValueError):
    """`--resume` on a folder whose rows were made with other suite settings."""


class SuiteRows:
    """The rows of one suite folder: the finished ones (read back on resume) and the ones still to run.

    Args:
        out: the suite folder.
        cfg: the suite's settings; cfg.budget() is the header the rows belong to.
        keys: the row fields that name a run (e.g. ("arch", "target", "method", "seed")).
        resume: read the finished rows of `out` (else the file is started afresh).
    """

    def __init__(self, out: Path, cfg: BenchConfig, keys: tuple[str, ...], resume: bool = False) -> None:
        self.path = Path(out) / ROWS_FILE
        self.keys = keys
        self.header = to_jsonable({"suite": cfg.suite, "budget": cfg.budget()})
        self.runs: list[dict[str, Any]] = []
        if resume and self.path.is_file():
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.header) + "\n")

    def _read(self) -> None:
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        header = json.loads(lines[0]) if lines else None
        if header != self.header:
            raise ResumeMismatchError(
                f"{self.path}: its rows were made with other settings ({_diff(header, self.header)}); resume with "
                "the same flags, or start afresh with --overwrite")
        for n, line in enumerate(lines[1:], start=2):
            try:
                self.runs.append(json.loads(line))
            except json.JSONDecodeError:  # a last line cut short when the run was stopped mid-write: rerun it
                if n != len(lines):
                    raise ValueError(f"{self.path}: line {n} is not JSON") from None
                self.path.write_text("\n".join(lines[:-1]) + "\n")

    def key(self, row: dict[str, Any]) -> RowKey:
        return tuple(row.get(k) for k in self.keys)

    def done(self, **key: Any) -> dict[str, Any] | None:
        """The finished row with these key values, or None."""
        want = tuple(key[k] for k in self.keys)
        return next((r for r in self.runs if self.key(r) == want), None)

    def add(self, row: dict[str, Any]) -> None:
        """Keep a finished row and append it to the file at once."""
        row = to_jsonable(row)
        self.runs.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


def _diff(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "no header line"
    ob, nb = old.get("budget", {}), new["budget"]
    changed = [f"{k}: {ob.get(k)!r} there, {nb.get(k)!r} now" for k in sorted(set(ob) | set(nb)) if ob.get(k) != nb.get(k)]
    if old.get("suite") != new["suite"]:
        changed.insert(0, f"suite {old.get('suite')!r} there")
    return "; ".join(changed) or "header differs"
