"""Save and load (pruned) models without pickle: safetensors weights + a JSON description in its metadata.

The description names how to rebuild the unpruned architecture (a prunekit.models registry name, or an
import path "package.module:function", with JSON keyword arguments) and the list of plans applied to it, in
order. Loading rebuilds the architecture, replays the plans (shapes only) and loads the weights.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .graph.plan import PruningPlan
from .surgery.apply import apply

FORMAT = "prunekit.model"
FORMAT_VERSION = 1
PLANS_ATTR = "_prunekit_plans"


class ModelFileError(ValueError):
    """A file that is not a prunekit model, or does not fit the model it is loaded into."""


def record_plan(model: nn.Module, plan: PruningPlan) -> None:
    """Remember a plan applied to `model` so save() can store the whole history."""
    plans = list(getattr(model, PLANS_ATTR, []))
    plans.append(plan.to_dict())
    object.__setattr__(model, PLANS_ATTR, plans)


def arch_of(model: nn.Module, arch: dict | str | None = None) -> dict | None:
    if isinstance(arch, str):
        return {"name": arch, "kwargs": {}}
    if arch is not None:
        if "name" not in arch and "factory" not in arch:
            raise ValueError("arch needs 'name' (registry) or 'factory' ('module:function'), plus 'kwargs'")
        return {**arch, "kwargs": dict(arch.get("kwargs", {}))}
    spec = getattr(model, "_prunekit_spec", None)
    return spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None


def describe(model: nn.Module, arch: dict | str | None = None, plans: list | None = None,
             extra: dict | None = None) -> dict:
    if plans is None:
        plans = list(getattr(model, PLANS_ATTR, []))
    return {"format": FORMAT, "version": FORMAT_VERSION, "arch": arch_of(model, arch),
            "plans": [p.to_dict() if isinstance(p, PruningPlan) else p for p in plans], "extra": extra or {}}


def _atomic_write(path: Path, writer, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model: nn.Module, path: str | os.PathLike, plan: PruningPlan | None = None, arch: dict | str | None = None,
         overwrite: bool = False, extra: dict | None = None) -> Path:
    """Write `model` to `path` (.safetensors). `plan`, if given and not yet recorded, is added to the history."""
    from safetensors.torch import save_file

    plans = list(getattr(model, PLANS_ATTR, []))
    if plan is not None and plan.to_dict() not in plans:
        plans.append(plan.to_dict())
    desc = describe(model, arch, plans, extra)
    if desc["arch"] is None:
        raise ValueError("cannot describe how to rebuild this model: pass arch={'name': <registry name>} or "
                         "arch={'factory': 'package.module:function', 'kwargs': {...}}, or build it with "
                         "prunekit.models.create")
    seen: dict[int, str] = {}
    tensors = {}
    for k, v in model.state_dict().items():
        if not isinstance(v, torch.Tensor):
            continue
        tensors[k] = v.detach().cpu().contiguous().clone() if id(v) in seen else v.detach().cpu().contiguous()
        seen[id(v)] = k
    path = Path(path)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"prunekit": json.dumps(desc)}), overwrite)
    return path


def build_arch(arch: dict) -> nn.Module:
    kwargs = dict(arch.get("kwargs", {}))
    if "factory" in arch:
        mod_name, _, fn_name = arch["factory"].partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise ModelFileError(f"cannot import model factory {arch['factory']!r}: {e}") from e
        return fn(**kwargs)
    from .models import create

    return create(arch["name"], **kwargs)


def rebuild(desc: dict, model: nn.Module | None = None) -> nn.Module:
    """The unpruned architecture with every recorded plan replayed (weights still random)."""
    if model is None:
        if not desc.get("arch"):
            raise ModelFileError("the file does not say how to rebuild its model; pass model=<unpruned model>")
        model = build_arch(desc["arch"])
    for i, p in enumerate(desc.get("plans", [])):
        try:
            apply(model, PruningPlan.from_dict(p))
        except ValueError as e:
            raise ModelFileError(f"plan {i + 1} of the file does not fit the model: {e}") from e
    object.__setattr__(model, PLANS_ATTR, list(desc.get("plans", [])))
    return model


def read_description(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises several error types
        raise ModelFileError(f"{path} is not a safetensors file ({e})") from e
    if "prunekit" not in meta:
        raise ModelFileError(f"{path} is a safetensors file without a prunekit description")
    desc = json.loads(meta["prunekit"])
    if desc.get("format") != FORMAT or desc.get("version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported description format {desc.get('format')} v{desc.get('version')}")
    return desc


def load(path: str | os.PathLike, model: nn.Module | None = None, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model written by save() (or a Deep Compression container) and load its weights.

    model: an unpruned instance to load into, for architectures not in the registry.
    """
    from .compress import is_compressed, read_compressed

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    if is_compressed(path):
        cf = read_compressed(path)
        desc = cf.description or {}
        desc = {"arch": desc.get("arch", desc if "name" in desc else None), "plans": desc.get("plans", [])}
        state = cf.state_dict
    else:
        from safetensors.torch import load_file

        desc = read_description(path)
        state = load_file(str(path), device=str(map_location))
    m = rebuild(desc, model)
    missing, unexpected = [], []
    own = m.state_dict()
    for k, v in own.items():
        if k not in state:
            missing.append(k)
        elif tuple(state[k].shape) != tuple(v.shape):
            raise ModelFileError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, model expects {tuple(v.shape)}")
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelFileError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    m.load_state_dict(state, strict=True)
    return m.to(map_location).eval()
