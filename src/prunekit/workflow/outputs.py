"""Output folders and files: nothing a command writes replaces an earlier run unless the caller asks.

Every writing entry point (the CLI's train, prune, demo, analyze, compress, decompress, report, bench and the
workflow) calls `prepare_output_dir` (a folder) or `check_output_file` (one file) before it starts work.

Example:
    >>> out = prepare_output_dir("runs/p1", overwrite=False, protect=["runs/base"])
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
from pathlib import Path
from typing import Iterable, Iterator

# File names (and glob patterns) that prunekit writes into a run folder: a folder holding one of these holds
# an earlier run. Commands that write new kinds of files add them with `register_output_names`.
RUN_OUTPUTS: list[str] = [
    "report.json", "report.md", "report.html", "model.safetensors", "model.json", "plan.json", "last.pt",
    "best.pt", "analysis.json", "analyze.png", "before_after.png", "layer_widths.png", "finetune_curve.png",
    "results.json", "results.md", "runs.json", "*.pkz", "*.onnx",
]


# Files of a run folder that a model is read from (prunekit.workflow.load_model and its description): an output
# file is never one of them when the folder is the command's input.
MODEL_FILES = ("model.safetensors", "model.pkz", "last.pt", "best.pt")  # in the order load_model prefers
INPUT_FILES = (*MODEL_FILES, "model.json")


class OutputExistsError(FileExistsError):
    """An output folder or file holds an earlier run and the caller did not ask to overwrite it."""


class OutputConflictError(ValueError):
    """An output folder would overlap an input (the base model's folder, for instance)."""


class NothingToResumeError(FileNotFoundError):
    """`--resume` / resume=True named a folder without a checkpoint to continue from."""


def register_output_names(*names: str) -> None:
    """Add file names or glob patterns that count as prunekit output (e.g. ``"model.onnx"``, ``"*.int8.pt"``)."""
    for n in names:
        if n not in RUN_OUTPUTS:
            RUN_OUTPUTS.append(n)


def earlier_outputs(folder: str | os.PathLike) -> list[str]:
    """Names of the prunekit outputs already in `folder` (sorted; empty when the folder is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    return [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in RUN_OUTPUTS)]


def _overlap(a: Path, b: Path) -> str | None:
    """How folder a relates to folder b ("is", "is inside", "contains"), or None when they are apart."""
    a, b = a.resolve(), b.resolve()
    if a == b:
        return "is"
    if b in a.parents:
        return "is inside"
    if a in b.parents:
        return "contains"
    return None


def input_folder(path: str | os.PathLike) -> Path:
    """The folder an input lives in: the path itself for a folder, its parent for a file."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def prepare_output_dir(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                       protect: Iterable[str | os.PathLike] = (), protect_files: Iterable[str | os.PathLike] = (),
                       flag: str = "--out", resume_file: str = "last.pt", create: bool = True) -> Path:
    """Check and create the output folder of a run; returns it.

    Args:
        out: the folder the run writes to.
        overwrite: replace an earlier run there (its prunekit outputs are removed first, so that no file of
            the old run is left mixed with the new one; other files are left alone).
        resume: continue the run there; `resume_file` must exist.
        protect: run inputs: a run folder, which `out` must neither be, be inside nor contain; or a file,
            whose folder `out` must neither be nor contain.
        protect_files: single input files that must not lie in `out` or below it.
        flag: the option that named `out`, for the messages.
        resume_file: the checkpoint a resumed run continues from.
        create: make the folder now (False: the first file written creates it, so a run that fails early
            leaves nothing behind).

    Raises:
        OutputConflictError: `out` overlaps a protected input (whatever `overwrite` says).
        OutputExistsError: `out` is a file, or holds an earlier run and neither overwrite nor resume is set.
        NothingToResumeError: resume is set and `out` has no `resume_file`.
    """
    out = Path(out)
    for item in protect:
        folder = input_folder(item)
        how = _overlap(out, folder)
        if how == "is inside" and not Path(item).is_dir():
            how = None  # next to a single input file's folder is fine; only its own folder holds its run
        if how is not None:
            raise OutputConflictError(f"{flag} {out} {how} the folder of the input {item}; write the run "
                                      "somewhere else so that the input is not replaced")
    for item in protect_files:
        f = Path(item).resolve()
        if out.resolve() in f.parents:
            raise OutputConflictError(f"{flag} {out} holds the input {item}; write somewhere else so that the "
                                      "input is not replaced")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{flag} {out} is a file, not a folder")
    if resume:
        if not (out / resume_file).is_file():
            what = "does not exist" if not out.exists() else f"holds no {resume_file}"
            raise NothingToResumeError(f"nothing to resume: {out} {what}; drop resume=True (--resume) to start a new run")
        return out
    found = earlier_outputs(out)
    if found and not overwrite:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise OutputExistsError(f"{flag} {out} holds an earlier run ({shown} already exist); pass overwrite=True "
                                f"(--overwrite) to replace it or choose another {flag}")
    for name in found:
        (out / name).unlink()
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def removed_on_failure(out: str | os.PathLike) -> Iterator[Path]:
    """Around a command that writes several files into `out`: when it fails, the files it added are removed
    (and `out` itself when it was created for it), so the retry is not refused as "an earlier run". Files that
    were there before are left alone."""
    out = Path(out)
    existed = out.exists()
    before = {p for p in out.rglob("*")} if existed else set()
    try:
        yield out
    except BaseException:
        if out.exists():
            added = sorted((p for p in out.rglob("*") if p not in before), key=lambda p: len(p.parts), reverse=True)
            for p in added:
                if p.is_dir() and not p.is_symlink():
                    if not any(p.iterdir()):
                        p.rmdir()
                else:
                    p.unlink(missing_ok=True)
            if not existed and not any(out.iterdir()):
                out.rmdir()
        raise


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
                      flag: str = "--out") -> Path:
    """Check that one output file may be written: it does not exist (or `overwrite`), is not a folder and is
    none of the `protect` inputs (a file, or a run folder: then none of the files a model is read from there,
    `INPUT_FILES`, whatever `overwrite` says). Creates its parent folder; returns the path."""
    path = Path(path)
    for item in protect:
        item = Path(item)
        if item.is_dir():
            inside = [item / n for n in INPUT_FILES if (item / n).exists()]
            hit = next((f for f in inside if path.resolve() == f.resolve()), None)
            if hit is not None:
                raise OutputConflictError(f"{flag} {path} is the model file {hit.name} of the input {item}; "
                                          "write it somewhere else")
        elif item.exists() and path.resolve() == item.resolve():
            raise OutputConflictError(f"{flag} {path} is the input {item}; write it somewhere else")
    if path.is_dir():
        raise OutputExistsError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{flag} {path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
