"""Reading IDX files (the MNIST / Fashion-MNIST container), gzipped or raw, with strict checks."""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import DataFormatError

# IDX type codes -> numpy big-endian dtypes
_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    """File contents, decompressed when the file is gzip (detected by its magic, not its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: corrupt or truncated gzip file ({e})") from e
    return raw


def parse_idx(data: bytes, source: str = "<bytes>") -> torch.Tensor:
    """Parse IDX bytes: magic 0x0000, a type code, the number of dimensions, big-endian int32 sizes,
    then exactly prod(sizes) items."""
    if len(data) < 4:
        raise DataFormatError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise DataFormatError(f"{source}: bad IDX magic number 0x{data[:4].hex()} "
                              "(expected 0x0000 + type code + number of dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{source}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "has trailing bytes"
        raise DataFormatError(f"{source}: IDX file {state}: shape {list(shape)} needs {expected} data "
                              f"bytes, found {found}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


def read_idx(path: str | Path, ndim: int | None = None) -> torch.Tensor:
    """Read one IDX file (gzip or raw) into a tensor; `ndim` checks the number of dimensions."""
    path = Path(path)
    t = parse_idx(_read_bytes(path), str(path))
    if ndim is not None and t.ndim != ndim:
        raise DataFormatError(f"{path}: expected {ndim} dimensions, found shape {list(t.shape)}")
    return t
