"""Console entry point of `prunekit`.

It loads the command line (and with it torch) inside a guard, so that Ctrl-C while the libraries are still
loading ends with one line and exit status 130, as Ctrl-C does later on; `--debug` keeps the traceback.
"""
from __future__ import annotations

import importlib
import sys

INTERRUPTED = 130


def main() -> int:
    """Load `prunekit.cli` and run it; an interrupt during loading is reported in one line."""
    try:
        cli = importlib.import_module("prunekit.cli")
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:
            raise
        print("prunekit: interrupted while starting; nothing was run or written", file=sys.stderr)
        return INTERRUPTED
    return cli.main(plain_warnings=True)  # warnings as `prunekit <command>: warning: ...` lines
