"""`prunekit report <folder>`: one self-contained HTML page (tables, plots inlined as data: URIs) for a run
folder (report.json) or a suite folder (results.json, results.md, plots) and their subfolders. A report.json
or results.json that cannot be read stops the command, naming the file."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..report import render_html
from ..report.schema import check_readable
from ..workflow import check_output_file
from . import argtypes as T
from .common import CliError


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="a run folder (runs/...) or a suite folder (benchmarks/results/<suite>)")
    p.add_argument("--out", default=None, help="HTML file to write (default FOLDER/report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    p.add_argument("--title", default=None, help="page title (default: from the report or the folder name)")
    p.add_argument("--depth", type=T.nonneg_int, default=2, help="levels of subfolders included")


def cmd_report(args: argparse.Namespace) -> int:
    if args.out and Path(args.out).suffix.lower() not in (".html", ".htm"):  # report.json, *.md are its inputs
        raise CliError(f"--out {args.out}: the report is an HTML page; give a file name ending in .html (with "
                       "--overwrite the page would replace that file, which may be one of the run's results)")
    folder = Path(args.folder)
    if folder.is_file():  # a report.json / results.json: its folder
        folder = folder.parent
    if not folder.is_dir():
        raise CliError(f"{args.folder} is not a folder" if folder.exists() else f"no such folder: {args.folder}")
    if not any(next(folder.glob(p), None) is not None for p in ("report.json", "results.json", "*.md", "*.png",
                                                                  "*/report.json", "*/results.json")):
        raise CliError(f"{folder} holds no report.json, results.json, Markdown or plots")
    check_readable(folder, args.depth)
    out = check_output_file(Path(args.out) if args.out else folder / "report.html", overwrite=args.overwrite)
    path = render_html(folder, out=out, title=args.title, depth=args.depth)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
