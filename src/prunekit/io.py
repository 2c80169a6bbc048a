"""Save and load (pruned) models without pickle: safetensors weights + a JSON description in its metadata.

The description names how to rebuild the unpruned architecture through an allow-listed registry
(``prunekit.models.resolve``: prunekit's, torchvision's, timm's, transformers' own classes) and the plans
applied to it, in order. Loading rebuilds the architecture, replays the plans (shapes only) and loads the
weights. A SHA-256 of the description and of every tensor (key, dtype, shape, bytes) is stored next to the
description and checked on load: a corrupted, truncated or edited file raises :class:`ModelFileError`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .compress.container import is_compressed, read_compressed
from .errors import ModelFileError
from .graph.plan import PruningPlan
from .models.resolve import build_arch, describe_arch
from .surgery.replay import PLANS_ATTR, rebuild
from .utils.checksum import tensors_digest
from .utils.fileio import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "build_arch", "describe", "load", "read_description",
           "rebuild", "save"]

FORMAT = "prunekit.model"
FORMAT_VERSION = 2  # 2: the file carries a SHA-256 (CHECKSUM_KEY); 1: written before checksums
DESC_KEY = "prunekit"
CHECKSUM_KEY = "prunekit.sha256"
DESC_FIELDS = {"format", "version", "arch", "plans", "extra"}


def arch_of(model: nn.Module, arch: dict | str | None = None) -> dict | None:
    """The architecture description to store: ``arch`` as given (a registry name or a dict), else what
    ``describe_arch`` can tell from the model."""
    if isinstance(arch, str):
        return {"name": arch, "kwargs": {}}
    if arch is not None:
        if not isinstance(arch, dict) or not ({"name", "factory", "library"} & set(arch)):
            raise ValueError("arch needs 'name' (prunekit registry), 'library' + 'name'/'class' (torchvision, timm, "
                             "transformers) or 'factory' ('module:function', loaded only with factory=), plus 'kwargs'")
        return {**arch, **({"kwargs": dict(arch.get("kwargs", {}))} if "config" not in arch else {})}
    return describe_arch(model)


def describe(model: nn.Module, arch: dict | str | None = None, plans: list | None = None,
             extra: dict | None = None) -> dict:
    """The JSON description stored in a model file."""
    if plans is None:
        plans = list(getattr(model, PLANS_ATTR, []))
    return {"format": FORMAT, "version": FORMAT_VERSION, "arch": arch_of(model, arch),
            "plans": [p.to_dict() if isinstance(p, PruningPlan) else p for p in plans], "extra": extra or {}}


def _digest(desc_json: str, tensors: dict[str, torch.Tensor]) -> str:
    return tensors_digest(tensors, prefix=desc_json.encode())


def save(model: nn.Module, path: str | os.PathLike, plan: PruningPlan | None = None, arch: dict | str | None = None,
         overwrite: bool = False, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (.safetensors), atomically, with its description and checksum.

    Args:
        model: the (pruned) model.
        path: the file to write.
        plan: a plan to add to the recorded history, if not recorded yet.
        arch: how to rebuild the unpruned model (default: what the model tells, see ``arch_of``).
        overwrite: replace an existing file.
        extra: JSON-able data stored in the description (e.g. the input shape).

    Returns:
        The path written.

    Example:
        >>> pk.save(pruned, "pruned.safetensors", plan=plan)  # doctest: +SKIP
    """
    plans = list(getattr(model, PLANS_ATTR, []))
    if plan is not None and plan.to_dict() not in plans:
        plans.append(plan.to_dict())
    desc = describe(model, arch, plans, extra)
    if desc["arch"] is None:
        raise ValueError("cannot describe how to rebuild this model: pass arch={'name': <registry name>}, "
                         "arch={'library': 'timm', 'name': <timm name>, 'kwargs': {...}} or build it with "
                         "prunekit.models.create")
    _check_rebuilds(model, desc)
    seen: set[int] = set()
    tensors = {}
    for k, v in model.state_dict().items():
        if not isinstance(v, torch.Tensor):
            continue
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()  # tied tensors (HF's tied embeddings) are new objects per key
        tensors[k] = t.clone() if ptr in seen else t  # tied tensors are stored once per name
        seen.add(ptr)
    desc_json = json.dumps(desc)
    meta = {DESC_KEY: desc_json, CHECKSUM_KEY: _digest(desc_json, tensors)}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=meta)
        _sort_header(tmp)

    return atomic_write(Path(path), write, overwrite=overwrite)


def _check_rebuilds(model: nn.Module, desc: dict) -> None:
    """Refuse to write a file that could not be loaded: an architecture a registry builds must, with its plans
    replayed, have the model's tensor shapes. Checked on the meta device (no memory, no weights); names only
    the caller's ``factory=`` can build, and transformers descriptions (the model's own config), are not."""
    arch = desc["arch"]
    if not isinstance(arch, dict) or arch.get("library") == "transformers":
        return
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in rebuild(desc, source="arch=").state_dict().items()}
    except Exception:  # noqa: BLE001 - not buildable here (a user factory, or not on the meta device): unchecked
        return
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor) and shapes.get(k, tuple(v.shape)) != tuple(v.shape):
            raise ValueError(f"arch={arch!r} builds {k} with shape {list(shapes[k])}, the model has {list(v.shape)}: "
                             "the file could not be loaded; pass the arguments the model was built with")


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header in place with its keys sorted, so that the same tensors and description
    give the same bytes (the writer emits its maps in a per-process hash order). The sorted header has the
    same length, so the tensor offsets are unchanged; a header that would not fit is left as written."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
        ordered.update(sorted(header.items()))
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) <= n:
            f.seek(8)
            f.write(text + b" " * (n - len(text)))  # safetensors pads its header with spaces


def _check_description(desc: Any, path: Path) -> dict:
    if not isinstance(desc, dict):
        raise ModelFileError(f"{path}: the prunekit description is not a JSON object")
    if desc.get("format") != FORMAT:
        raise ModelFileError(f"{path}: the description's format is {desc.get('format')!r}, expected {FORMAT!r}")
    version = desc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported description version {version!r} (this prunekit reads 1.."
                             f"{FORMAT_VERSION})")
    extra = sorted(set(desc) - DESC_FIELDS)
    if extra:
        raise ModelFileError(f"{path}: the description has unknown fields {extra}")
    if desc.get("arch") is not None and not isinstance(desc["arch"], dict):
        raise ModelFileError(f"{path}: the description's 'arch' must be a JSON object or null")
    if not isinstance(desc.get("plans", []), list) or not isinstance(desc.get("extra", {}), dict):
        raise ModelFileError(f"{path}: the description's 'plans' must be a list and 'extra' an object")
    return desc


def _open(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file (safetensors checks the header covers the file exactly)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several error types for broken files
        raise ModelFileError(f"{path} is not a readable safetensors file: corrupt or truncated ({e})") from e


def _parse_description(meta: dict[str, str], path: Path) -> dict:
    if DESC_KEY not in meta:
        raise ModelFileError(f"{path} is a safetensors file without a prunekit description")
    odd = sorted(set(meta) - {DESC_KEY, CHECKSUM_KEY})
    if odd:
        raise ModelFileError(f"{path}: unexpected metadata entries {odd[:3]}: corrupt file")
    try:
        desc = json.loads(meta[DESC_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: the prunekit description is not valid JSON ({e}): corrupt file") from e
    return _check_description(desc, path)


def read_description(path: str | os.PathLike) -> dict:
    """The JSON description stored in a model file (its checksum is verified too)."""
    return _read_checked(Path(path), allow_unverified=True)[0]


def _check_model_path(path: Path) -> None:
    """A missing path, a folder and a training checkpoint each get their own message (not "corrupt")."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a model file; pass the model file inside it (a run "
                                "folder holds model.safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    magic = head[:4]
    header_len = int.from_bytes(head, "little") if len(head) == 8 else 0
    # a safetensors file starts with its header's length (8 bytes, little-endian: NULs in the high bytes)
    if head[:1] in (b"{", b"[") and b"\0" not in head and header_len > path.stat().st_size:
        raise ModelFileError(f"{path} holds JSON text, not a model file (prunekit's models are .safetensors files "
                             "from pk.save, a run folder's model.safetensors, or .pkz containers)")
    # an ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08
    if header_len > path.stat().st_size and (path.suffix.lower() == ".onnx" or head[:1] == b"\x08"):
        raise ModelFileError(f"{path} looks like an ONNX file, not a prunekit model file: onnxruntime runs it; "
                             "prunekit reads .safetensors files from pk.save, run folders and .pkz containers "
                             "(export and quantize take those and write ONNX)")
    if magic == b"PK\x03\x04" and not is_compressed(path):  # a zip archive: torch.save's format
        raise ModelFileError(f"{path} is a torch checkpoint (zip archive), not a prunekit model file: pk.load "
                             "reads .safetensors files from pk.save and .pkz containers; a training "
                             "checkpoint loads through prunekit.workflow.load_model with model.json beside it")


def _read_checked(path: Path, allow_unverified: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """Description and tensors of a safetensors model file, after its checksum is verified."""
    _check_model_path(path)
    meta, tensors = _open(path)
    desc = _parse_description(meta, path)
    stored = meta.get(CHECKSUM_KEY)
    if stored is None:
        if desc["version"] >= 2:
            raise ModelFileError(f"{path}: the checksum is missing: corrupt file")
        if not allow_unverified:
            raise ModelFileError(f"{path} was written before prunekit stored checksums, so it cannot be verified; "
                                 "pass allow_unverified=True to load it anyway, then save it again")
    elif stored != _digest(meta[DESC_KEY], tensors):
        raise ModelFileError(f"{path}: checksum mismatch, the file is corrupted (its tensors or description changed "
                             "after it was written)")
    return desc, tensors


def load(path: str | os.PathLike, model: nn.Module | None = None, factory: Callable[..., nn.Module] | None = None,
         map_location: str | torch.device = "cpu", allow_unverified: bool = False) -> nn.Module:
    """Rebuild a model written by :func:`save` (or a ``.pkz`` container) and load its weights.

    Nothing the file names is imported or run: the architecture comes from an allow-listed registry, or from
    ``model`` / ``factory`` given by the caller.

    Args:
        path: the model file.
        model: an unpruned instance to load into (for architectures no registry knows).
        factory: a callable building the unpruned model, called with the description's ``kwargs``.
        map_location: device of the returned model.
        allow_unverified: load a file written before checksums existed (format version 1).

    Returns:
        The model, in eval mode.

    Raises:
        ModelFileError: the file is corrupt, truncated, malformed, names a factory outside the allow-list,
            or does not fit ``model``.

    Example:
        >>> model = pk.load("pruned.safetensors")  # doctest: +SKIP
    """
    path = Path(path)
    _check_model_path(path)
    if is_compressed(path):
        cf = read_compressed(path)
        d = cf.description or {}
        if not isinstance(d, dict):
            raise ModelFileError(f"{path}: the container's model description is not a JSON object")
        arch = {k: v for k, v in d.items() if k != "plans"} or None
        desc, state = {"arch": arch, "plans": d.get("plans", [])}, cf.state_dict
    else:
        desc, state = _read_checked(path, allow_unverified)
    m = rebuild(desc, model=model, factory=factory, source=str(path))
    own = m.state_dict()
    for k, v in own.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise ModelFileError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, model expects {tuple(v.shape)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelFileError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    m.load_state_dict(state, strict=True)
    return m.to(map_location).eval()
