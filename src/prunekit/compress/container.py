"""The compressed model file (``.pkz``): header, JSON description, Huffman-coded tensors. See FORMAT.md.

Weight tensors with few distinct values (after pruning and weight sharing) are stored as a float32
codebook, Huffman-coded cluster indices and Huffman-coded gaps between non-zeros; everything else is raw.
Coding is lossless at the bit level (codebook entries are the exact bit patterns that occur), so the
loaded dense model reproduces the weight-shared model's outputs bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.compress import huffman
from prunekit.compress.sharing import plain_state_dict
from prunekit.errors import ModelFileError
from prunekit.models import spec_of
from prunekit.surgery.replay import PLANS_ATTR, rebuild
from prunekit.utils.fileio import atomic_write

MAGIC = b"\x89PKZ\r\n\x1a\n"
VERSION = 1
_FIXED = struct.Struct("<8sHHIQ32s")   # magic, version, flags, header length, body length, sha256(header + body)
FLAG_ZLIB_HEADER = 1                   # the JSON header is zlib-compressed (always set by this writer)
HEADER_SIZE = _FIXED.size             # 56
MAX_CODEBOOK = 1 << 16
_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


class CompressedFileError(ModelFileError):
    """A file that is not a valid prunekit compressed model (wrong magic, truncated, corrupted)."""


@dataclass
class CompressedFile:
    """The decoded content of a compressed file."""

    description: dict[str, Any] | None
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: list[dict[str, Any]] = field(default_factory=list)   # per-tensor header entries
    file_bytes: int = 0


@dataclass
class SaveInfo:
    """What :func:`save_compressed` wrote."""

    path: str
    file_bytes: int
    dense_bytes: int                                   # float32 size of all floating-point entries
    tensor_bytes: dict[str, int] = field(default_factory=dict)  # body bytes per tensor
    encodings: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.dense_bytes / self.file_bytes


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise CompressedFileError(f"unknown dtype {name!r} in file")
    return dt


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _encode_shared(t: torch.Tensor) -> tuple[dict[str, Any], list[bytes]] | None:
    """Codebook + Huffman encoding of ``t``, or None when it has too many distinct values."""
    if t.dtype not in _INT_VIEW or t.ndim < 2:
        return None
    flat = t.detach().cpu().contiguous().reshape(-1)
    bits = flat.view(_INT_VIEW[t.dtype])
    nz = bits != 0                      # bit-level: -0.0 is a value, +0.0 is a gap
    uniq, inv = torch.unique(bits[nz], return_inverse=True)
    if uniq.numel() > MAX_CODEBOOK:
        return None
    codebook = uniq.view(t.dtype).float()
    entry: dict[str, Any] = {"encoding": "shared", "nnz": int(nz.sum()), "k": int(uniq.numel())}
    blobs = [_raw_bytes(codebook)]
    idx = inv.numpy().astype(np.int64)
    itab = huffman.HuffmanTable.from_stream(idx)
    istream, entry["index_nbits"] = huffman.encode(idx, itab)
    blobs += [itab.to_bytes(), istream]
    if entry["nnz"] < flat.numel():
        pos = torch.nonzero(nz).reshape(-1).numpy().astype(np.int64)
        gaps = np.diff(pos, prepend=-1) - 1
        gtab = huffman.HuffmanTable.from_stream(gaps)
        gstream, entry["gap_nbits"] = huffman.encode(gaps, gtab)
        blobs += [gtab.to_bytes(), gstream]
    return entry, blobs


SHARED_SECTIONS = ("codebook", "index_table", "index_stream", "gap_table", "gap_stream")


def encode_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[dict[str, Any]], bytes]:
    """Per-tensor header entries and the body bytes; each tensor takes the smaller of raw and shared.

    A tensor's sections follow the previous tensor's in the body; its entry lists their lengths
    (``sizes``), so offsets are implied."""
    if sys.byteorder != "little":
        raise NotImplementedError("the compressed format is little-endian; big-endian hosts are not supported")
    body = bytearray()
    entries = []
    for key, t in state_dict.items():
        raw = _raw_bytes(t)
        entry: dict[str, Any] = {"key": key, "dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
        shared = _encode_shared(t)
        if shared is not None and sum(len(b) for b in shared[1]) < len(raw):
            info, blobs = shared
            entry.update(info)
        else:
            entry["encoding"], blobs = "raw", [raw]
        entry["sizes"] = [len(b) for b in blobs]
        for b in blobs:
            body += b
        entries.append(entry)
    return entries, bytes(body)


def _sections(body: memoryview, e: dict[str, Any], start: int, names: tuple[str, ...]) -> dict[str, memoryview]:
    sizes = e.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != len(names) or any(not isinstance(n, int) or n < 0 for n in sizes):
        raise CompressedFileError(f"tensor {e.get('key')!r}: expected {len(names)} section sizes, got {sizes!r}")
    if start + sum(sizes) > len(body):
        raise CompressedFileError(f"tensor {e.get('key')!r}: sections run past the end of the body")
    out, off = {}, start
    for name, n in zip(names, sizes):
        out[name] = body[off:off + n]
        off += n
    return out


def _decode_tensor(body: memoryview, e: dict[str, Any], start: int) -> tuple[torch.Tensor, int]:
    """Decode the tensor whose sections start at ``start``; returns it and the offset after it."""
    key = e.get("key")
    dtype = _dtype(e["dtype"])
    shape = [int(s) for s in e["shape"]]
    numel = int(np.prod(shape)) if shape else 1
    end = start + sum(e.get("sizes") or [])
    if e["encoding"] == "raw":
        data = _sections(body, e, start, ("data",))["data"]
        if len(data) != numel * torch.empty((), dtype=dtype).element_size():
            raise CompressedFileError(f"tensor {key!r}: raw data has {len(data)} bytes for shape {shape}")
        if numel == 0:
            return torch.empty(shape, dtype=dtype), end
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape).clone(), end
    if e["encoding"] != "shared" or dtype not in _INT_VIEW:
        raise CompressedFileError(f"tensor {key!r}: unknown encoding {e['encoding']!r} for dtype {e['dtype']}")
    nnz, k = int(e["nnz"]), int(e["k"])
    sec = _sections(body, e, start, SHARED_SECTIONS if nnz < numel else SHARED_SECTIONS[:3])
    if len(sec["codebook"]) != 4 * k or nnz > numel:
        raise CompressedFileError(f"tensor {key!r}: inconsistent codebook size or non-zero count")
    cb = sec["codebook"]
    codebook = torch.frombuffer(bytearray(cb), dtype=torch.float32).to(dtype) if k else torch.zeros(0, dtype=dtype)
    try:
        itab, _ = huffman.HuffmanTable.from_bytes(sec["index_table"])
        idx = huffman.decode(sec["index_stream"], int(e["index_nbits"]), nnz, itab)
        if nnz < numel:
            gtab, _ = huffman.HuffmanTable.from_bytes(sec["gap_table"])
            gaps = huffman.decode(sec["gap_stream"], int(e["gap_nbits"]), nnz, gtab)
            pos = np.cumsum(gaps + 1) - 1
        else:
            pos = np.arange(numel)
    except huffman.HuffmanError as err:
        raise CompressedFileError(f"tensor {key!r}: {err}") from err
    if nnz and (idx.max() >= k or pos[-1] >= numel):
        raise CompressedFileError(f"tensor {key!r}: decoded indices or positions out of range")
    out = torch.zeros(numel, dtype=dtype)
    out[torch.from_numpy(pos)] = codebook[torch.from_numpy(idx)]
    return out.reshape(shape), end


def _normalise_description(description: Mapping[str, Any] | str | None, model: nn.Module) -> dict[str, Any] | None:
    """``{"name", "kwargs", "plans"?}``; by default the registry spec of a model built by
    ``prunekit.models.create`` plus the structured-pruning plans recorded on it (``prunekit.io``)."""
    plans = list(getattr(model, PLANS_ATTR, []))
    if description is None:
        spec = spec_of(model)
        if not hasattr(spec, "to_dict"):
            return None
        d = spec.to_dict()
    elif isinstance(description, str):
        d = {"name": description, "kwargs": {}}
    else:
        d = dict(description)
        if "name" not in d:
            raise ValueError("description needs a 'name' (the prunekit.models registry name) and optional "
                             "'kwargs' and 'plans'")
        d.setdefault("kwargs", {})
    if plans and "plans" not in d:
        d["plans"] = plans
    return d


def build_model(description: Mapping[str, Any]) -> nn.Module:
    """The model a description names, through the allow-listed registries (``prunekit.models.resolve``), with
    any recorded structured-pruning plans replayed."""
    if not isinstance(description, Mapping):
        raise CompressedFileError("the container's model description is not a JSON object")
    arch = {k: v for k, v in description.items() if k != "plans"}
    return rebuild({"arch": arch, "plans": list(description.get("plans") or [])}, source="the container")


def save_compressed(model: nn.Module, path: str | os.PathLike, description: Mapping[str, Any] | str | None = None,
                    overwrite: bool = False, meta: Mapping[str, Any] | None = None) -> SaveInfo:
    """Write ``model`` (masks and weight sharing folded in) to ``path`` atomically.

    ``description`` = ``{"name": registry name, "kwargs": {...}}`` (or just the name; default: the spec of a
    model built by ``prunekit.models.create``) lets :func:`load_compressed` rebuild the model with
    ``prunekit.models.create``. ``meta`` is any JSON-able
    extra (e.g. accuracy). Refuses to overwrite an existing file unless ``overwrite=True``.
    """
    sd = plain_state_dict(model)
    entries, body = encode_state_dict(sd)
    header = {"format": "prunekit.compressed", "version": VERSION, "model": _normalise_description(description, model),
              "meta": dict(meta or {}), "tensors": entries}
    js = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    digest = hashlib.sha256(js + body).digest()
    data = _FIXED.pack(MAGIC, VERSION, FLAG_ZLIB_HEADER, len(js), len(body), digest) + js + body
    p = Path(path)
    atomic_write(p, data, overwrite=overwrite)
    dense = 4 * sum(v.numel() for v in sd.values() if v.is_floating_point())
    sizes = {e["key"]: sum(e["sizes"]) for e in entries}
    return SaveInfo(str(p), len(data), dense, sizes, {e["key"]: e["encoding"] for e in entries})


def is_compressed(path_or_bytes: str | os.PathLike | bytes) -> bool:
    """Whether a file (or its first bytes) starts with the compressed-model magic."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes[:len(MAGIC)]) == MAGIC
    try:
        with open(path_or_bytes, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_compressed(path: str | os.PathLike) -> CompressedFile:
    """Check and decode a compressed file into its description and state dict."""
    data = Path(path).read_bytes()
    if len(data) < HEADER_SIZE:
        if not data.startswith(MAGIC[:len(data)]) or not data:
            raise CompressedFileError(f"{path}: not a prunekit compressed model file")
        raise CompressedFileError(f"{path}: truncated (header needs {HEADER_SIZE} bytes, file has {len(data)})")
    magic, version, flags, js_len, body_len, digest = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise CompressedFileError(f"{path}: not a prunekit compressed model file (bad magic {magic!r})")
    expected = HEADER_SIZE + js_len + body_len
    payload = memoryview(data)[HEADER_SIZE:]
    intact = len(data) == expected and hashlib.sha256(payload).digest() == digest
    if version < 1:
        raise CompressedFileError(f"{path}: corrupt file (format version {version}; versions start at 1)")
    if version > VERSION or flags & ~FLAG_ZLIB_HEADER:
        # version and flags are outside the checksum: a whole file with unknown ones is a newer writer's (or a
        # damaged fixed header's), a file whose checksum fails too is corrupt
        what = (f"format version {version}, newer than this prunekit reads ({VERSION})" if version > VERSION
                else f"unknown flag bits {flags & ~FLAG_ZLIB_HEADER:#x} in format version {version}")
        if intact:
            raise CompressedFileError(f"{path}: {what}: written by a newer prunekit, or its fixed header is "
                                      "damaged")
        raise CompressedFileError(f"{path}: corrupt file (the fixed header after the magic is invalid: version "
                                  f"{version}, flags {flags:#x}, and the checksum does not match)")
    if len(data) < expected:
        raise CompressedFileError(f"{path}: truncated or corrupt ({len(data)} bytes, header announces {expected})")
    if len(data) > expected:
        raise CompressedFileError(f"{path}: corrupt file ({len(data) - expected} unexpected trailing bytes)")
    if not intact:
        raise CompressedFileError(f"{path}: checksum mismatch, the file is corrupted")
    try:
        js = bytes(payload[:js_len])
        header = json.loads(zlib.decompress(js) if flags & FLAG_ZLIB_HEADER else js)
        if header.get("version") != version:  # the JSON header (inside the checksum) repeats the version
            raise CompressedFileError(f"{path}: corrupt file (the fixed header says format version {version}, "
                                      f"the checksummed JSON header {header.get('version')!r})")
        body = payload[js_len:]
        sd, offset = {}, 0
        for e in header["tensors"]:
            sd[e["key"]], offset = _decode_tensor(body, e, offset)
        if offset != len(body):
            raise CompressedFileError(f"{path}: the tensors cover {offset} of the body's {len(body)} bytes")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RuntimeError, zlib.error) as e:
        if isinstance(e, CompressedFileError):
            raise
        raise CompressedFileError(f"{path}: malformed header ({e})") from e
    return CompressedFile(header.get("model"), sd, header.get("meta", {}), header["tensors"], len(data))


def load_compressed(path: str | os.PathLike, model: nn.Module | None = None,
                    device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the dense model stored at ``path`` (in eval mode).

    Without ``model`` the file's description rebuilds it (:func:`build_model`). With a ``model`` its
    weights are replaced (strict: keys and shapes must match).
    """
    cf = read_compressed(path)
    if model is None:
        if not cf.description:
            raise CompressedFileError(f"{path} has no model description; pass the model to load into")
        model = build_model(cf.description)
    try:
        model.load_state_dict(cf.state_dict, strict=True)
    except RuntimeError as e:
        raise CompressedFileError(f"{path} does not fit the model: {e}") from e
    return model.to(device).eval()
