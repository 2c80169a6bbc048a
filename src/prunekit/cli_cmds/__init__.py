"""Subcommand modules of the `prunekit` command line.

A module `prunekit.cli_cmds.<name>` (prune, analyze, bench, export, report, compress, ...) defines
`add_<name>_arguments(parser)` (or `add_arguments`) and `cmd_<name>(args) -> int | None` (or `run`);
`prunekit.cli` finds them by name (decompress lives in compress). Shared helpers (argument groups,
loaders, model loading, measuring, tables) are in `common`."""
