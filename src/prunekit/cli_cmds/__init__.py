"""Subcommand modules of the `prunekit` command line: `prunekit.cli_cmds.<name>` defines
`add_<name>_arguments(parser)` and `cmd_<name>(args) -> int` (decompress lives in compress), listed in
`prunekit.cli.COMMANDS`. They only parse flags into library calls; nothing outside the CLI imports them.
Shared argument groups and the user-error type are in `common`, the range-checked flag types in `argtypes`."""
