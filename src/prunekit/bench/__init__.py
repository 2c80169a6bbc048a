"""Benchmark suites that reproduce the papers' comparisons side by side (`prunekit bench <suite>`).

Each suite module has `PRESETS` ({"default": {...}, "quick": {...}, "opts": {...}}: BenchConfig fields; an
--opt key must be among the suite's "opts" / "<size>_opts" or its "extra_opts" names, else it is refused) and
`run(cfg) -> results dict`; results land in `cfg.out` (default benchmarks/results/<suite>) as results.json,
runs.json, results.md and plots.
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import BenchConfig, make_config

SUITES = ("redundancy", "coarse", "admm", "speed", "compression", "quantize", "transformers")


def suite_module(name: str):
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of: {', '.join(SUITES)}")
    return importlib.import_module(f"prunekit.bench.{name}")


def suite_config(name: str, quick: bool = False, **overrides: Any) -> BenchConfig:
    """The suite's preset (quick or default) with `overrides` (None values ignored)."""
    return make_config(name, quick, suite_module(name).PRESETS, **overrides)


def run_suite(name: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """Run suite `name`; returns its results.json object."""
    return suite_module(name).run(suite_config(name, quick, **overrides))


__all__ = ["BenchConfig", "SUITES", "suite_config", "make_config", "run_suite", "suite_module"]
