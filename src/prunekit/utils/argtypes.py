"""Typed argparse converters: every numeric flag of the command line (and of the benchmark scripts) is
range-checked when it is parsed, so a bad value stops the command with argparse's one-line usage error before
any work starts.

Example:
    >>> p.add_argument("--ratio", type=fraction, default=None)          # 0 <= x < 1
    >>> p.add_argument("--bits-conv", type=int_between(0, 16), default=8)
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

import torch


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_between(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """Converter for an integer in [lo, hi] (either bound may be None: unbounded)."""
    def convert(text: str) -> int:
        v = int(_number(text, int))
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {_bounds(lo, hi, False, False)}, got {v}")
        return v
    convert.__name__ = "integer"
    return convert


def float_between(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                  hi_open: bool = False) -> Callable[[str], float]:
    """Converter for a float in the interval from lo to hi; `*_open` excludes that bound."""
    def convert(text: str) -> float:
        v = float(_number(text, float))
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi:
            raise argparse.ArgumentTypeError(f"must be a number {_bounds(lo, hi, lo_open, hi_open)}, got {v:g}")
        return v
    convert.__name__ = "number"
    return convert


def _bounds(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


positive_int = int_between(1)
"""An integer >= 1 (counts of epochs-with-work, iterations, batch sizes, round-to multiples)."""
nonneg_int = int_between(0)
"""An integer >= 0 (epochs, runs, workers: 0 means none)."""
positive_float = float_between(0.0, lo_open=True)
"""A number > 0 (learning rates, widths, temperatures)."""
nonneg_float = float_between(0.0)
"""A number >= 0 (weight decay, warm-up epochs)."""
fraction = float_between(0.0, 1.0, hi_open=True)
"""A number in [0, 1) (a share removed: --ratio, --sparsity, --label-smoothing)."""
open_fraction = float_between(0.0, 1.0, lo_open=True, hi_open=True)
"""A number in (0, 1) (--max-ratio)."""
keep_fraction = float_between(0.0, 1.0, lo_open=True)
"""A number in (0, 1] (targets: the share of MACs, parameters, latency or size kept)."""
num_classes = int_between(2)
"""An integer >= 2 (a classifier needs two classes)."""
bits = int_between(1, 16)
"""Weight-sharing bits, 1..16."""
bits_or_off = int_between(0, 16)
"""Weight-sharing bits, 1..16, or 0 for no sharing."""


def count_or_fraction(text: str) -> int | float:
    """A sample count (an integer written as one: 0, 1, 500) or a fraction in [0, 1) of the data (the
    validation size). "1.0" is refused rather than read as one sample."""
    v = float(_number(text, float))
    if v >= 1 and text.strip().lstrip("+").isdigit():
        return int(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be a count >= 1 or a fraction in [0, 1), got {text} (a count is "
                                         "written as an integer)")
    return 0 if v == 0 else v


def device(text: str) -> str:
    """A torch device string that exists here: cpu, cuda, cuda:N or mps."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; valid: cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"device {text!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"device {text!r}: this machine has {torch.cuda.device_count()} "
                                             "CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"device {text!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported; valid: cpu, cuda, cuda:N, mps")
    return text
