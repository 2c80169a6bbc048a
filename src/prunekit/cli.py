"""The `prunekit` command line. Each subcommand lives in a module (the table below) that defines
`add_<name>_arguments(parser)` and `cmd_<name>(args) -> int`; user errors print one line (exit 2), a
traceback only with `--debug`."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .cli_cmds.common import CliError
from .data import DataError
from .graph.trace import UnsupportedOpError

# name -> (module defining add_<name>_arguments / cmd_<name>, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("prunekit.cli_cmds.demo", "a short end-to-end run that prints a table"),
    "train": ("prunekit.cli_cmds.train", "train a registered model on a data set; writes report.json"),
    "info": ("prunekit.cli_cmds.info", "parameters, MACs, latency and size of a model or checkpoint"),
    "prune": ("prunekit.cli_cmds.prune", "prune a model (method, criterion, policy, target or a YAML recipe)"),
    "analyze": ("prunekit.cli_cmds.analyze", "channel groups and sensitivity of a model"),
    "bench": ("prunekit.cli_cmds.bench", "compare pruning configurations side by side"),
    "quantize": ("prunekit.cli_cmds.quantize", "int8 quantization of a (pruned) model, measured"),
    "export": ("prunekit.cli_cmds.export", "export a (pruned) model to ONNX"),
    "report": ("prunekit.cli_cmds.report", "render report.json files as Markdown/HTML and plots"),
    "compress": ("prunekit.cli_cmds.compress", "weight sharing + Huffman coding into a compressed file"),
    "decompress": ("prunekit.cli_cmds.compress", "rebuild a model from a compressed file"),
}
SUBCOMMANDS = list(COMMANDS)

# errors that are the user's (a bad flag, file or input): one line, no hint
USER_ERRORS = (CliError, DataError, ValueError, TypeError, OSError, FloatingPointError, ImportError,
               UnsupportedOpError)
INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunekit", description="Prune PyTorch models and measure what it buys.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text)
        getattr(mod, f"add_{name}_arguments")(p)
        p.set_defaults(func=getattr(mod, f"cmd_{name}"))
    return parser


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text if isinstance(e, USER_ERRORS) else f"{type(e).__name__}: {text} (--debug shows the traceback)"


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: for train, whether a checkpoint to resume from exists."""
    if args.command != "train":
        return "interrupted"
    last = Path(args.out) / "last.pt"
    if last.is_file():
        return f"interrupted; resume with --resume (from {last})"
    return "interrupted before the first checkpoint; nothing to resume, start the run again"


_PACKAGE_DIR = Path(__file__).resolve().parent


def warning_origin(filename: str) -> str | None:
    """The top-level package whose code raised a warning (None for prunekit's own): the folder below
    site-packages / dist-packages, else the file's name."""
    path = Path(filename).resolve()
    if _PACKAGE_DIR in path.parents:
        return None
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages"):
            return Path(parts[i + 1]).stem
    return path.name


def warning_text(message: Warning | str, category: type[Warning], origin: str | None = None) -> str:
    """A warning as one line: prunekit's own UserWarnings as their text; any other category, and any warning
    from another package (`origin`), with the category and the package first."""
    text = " ".join(str(message).split())
    if origin is None:
        return text if category is UserWarning else f"{category.__name__}: {text}"
    return f"{category.__name__} from {origin}: {text}"


@contextlib.contextmanager
def warnings_as_lines(command: str):
    """Print each warning as `prunekit <command>: warning: <one line>` on stderr instead of Python's
    `file:line: Category: text` plus the source line; which warnings show (once per place) is unchanged."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = warning_text(message, category, warning_origin(filename))
        print(f"prunekit {command}: warning: {text}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None, plain_warnings: bool = False) -> int:
    """Run the command line; returns the exit status (2 for errors, 130 when interrupted).

    plain_warnings: print warnings as one `prunekit <command>: warning: ...` line each (the console command
    does; without --debug). Off by default so that a caller's own warning capture (pytest.warns,
    warnings.catch_warnings(record=True)) still receives them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # which flags were given (recipes yield to them)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings_as_lines(args.command) if plain_warnings and not args.debug else contextlib.nullcontext():
            rc = args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"prunekit {args.command}: {_interrupted(args)}", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every error is reported as one line without --debug
        if args.debug:
            raise
        print(f"prunekit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
