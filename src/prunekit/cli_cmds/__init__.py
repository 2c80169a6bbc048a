"""Subcommand modules of the `prunekit` command line.

A module `prunekit.cli_cmds.<name>` (name one of prune, analyze, bench, export, report, compress,
decompress) defines `add_arguments(parser)` and `run(args) -> int | None`; `prunekit.cli` finds it by
name. Shared helpers (argument groups, loaders, model loading, measuring, tables) are in `common`."""
