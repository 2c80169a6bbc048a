"""Building, loading, saving and measuring the models of a run: registry models sized for a data set,
saved models (prunekit.io files) and trainer checkpoint folders (last.pt / best.pt + model.json)."""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .. import io as pk_io
from ..measure import model_metrics
from ..models import get_entry, spec_of
from ..models.resolve import build_arch
from ..train import load_checkpoint
from ..utils import atomic_write
from .outputs import MODEL_FILES

MODEL_FILE = "model.json"  # registry spec (+ the input shape trained on) written next to trainer checkpoints
EXAMPLE_SEED = 0           # example inputs come from their own generator: measuring never moves torch's RNG
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".pkz", ".json", ".onnx", ".bin")


class ModelSourceError(FileNotFoundError):
    """A model named by path that does not exist or holds no model."""


def looks_like_path(text: str) -> bool:
    """Whether a --model / target string means a file rather than a registry name (it has a folder separator
    or a model file suffix, and no "scheme:" prefix such as torchvision: or hf:)."""
    head, sep, _ = text.partition(":")
    if sep and head.isidentifier() and len(head) > 1:
        return False
    return os.sep in text or "/" in text or text.lower().endswith(MODEL_SUFFIXES)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a syntax error becomes a ValueError naming the file, line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid {what} ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a valid {what} (not UTF-8 text: {e.reason} at byte {e.start})") from None


def model_kwargs(name: str, num_classes: int, in_channels: int, width: float,
                 input_size: int | None) -> dict[str, Any]:
    """Arguments for `models.create`, passing input_size only to factories that take it."""
    kw: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels, "width": width}
    if input_size is not None and "input_size" in inspect.signature(get_entry(name).factory).parameters:
        kw["input_size"] = input_size
    return kw


def check_fits_data(kw: dict[str, Any], info: Any, source: str) -> None:
    """Refuse, before any training, a model that cannot read the data set's images or predict all its labels
    (it would fail inside the first step with an index or shape error).

    Args:
        kw: the model's `models.create` arguments (num_classes, in_channels).
        info: the data set's DatasetInfo.
        source: what set them, for the message ("--num-classes", "--base runs/x").
    """
    n, c = kw.get("num_classes"), kw.get("in_channels")
    if n is not None and n < info.num_classes:
        raise ValueError(f"{source}: num_classes={n}, but {info.name} has {info.num_classes} classes (labels 0.."
                         f"{info.num_classes - 1})")
    if c is not None and c != info.in_channels:
        raise ValueError(f"{source}: in_channels={c}, but the images of {info.name} have {info.in_channels} "
                         "channel(s)")


def example_input(in_channels: int, size: int | Sequence[int], batch: int = 1) -> torch.Tensor:
    """A seeded random batch [batch, C, H, W] (its own generator: torch's global RNG is left untouched)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return torch.randn(batch, in_channels, h, w, generator=torch.Generator().manual_seed(EXAMPLE_SEED))


def save_model(model: nn.Module, out: Path, input_shape: Sequence[int] | None = None) -> list[Path]:
    """Write model.json (registry spec + the (C, H, W) input it was trained on) and model.safetensors into
    `out` (a folder the caller checked with `prepare_output_dir`)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    spec = spec_of(model)
    if spec is not None:
        desc = {**spec.to_dict(), **({"input_shape": list(input_shape)} if input_shape else {})}
        atomic_write(out / MODEL_FILE, json.dumps(desc, indent=2) + "\n", overwrite=True)
        written.append(out / MODEL_FILE)
    extra = {"input_shape": list(input_shape)} if input_shape else None
    written.append(Path(pk_io.save(model, out / "model.safetensors", overwrite=True, extra=extra)))
    return written


def _model_file(folder: Path) -> Path | None:
    return next((d / MODEL_FILE for d in (folder, folder.parent) if (d / MODEL_FILE).exists()), None)


def load_model(path: str | os.PathLike) -> nn.Module:
    """A model from a prunekit.io file, or from a trainer checkpoint (.pt) with model.json beside it."""
    return load_model_with_shape(path)[0]


def model_file_of(path: str | os.PathLike) -> Path:
    """The file a model path names: the path itself, or in a run folder the first of MODEL_FILES it holds.

    Raises:
        ModelSourceError: no such file, or a folder without a model.
    """
    p = Path(path)
    if not p.exists():
        raise ModelSourceError(f"no such file or folder: {p}")
    if not p.is_dir():
        return p
    found = [p / n for n in MODEL_FILES if (p / n).exists()]
    if not found:
        raise ModelSourceError(f"{p} holds no {', '.join(MODEL_FILES[:-1])} or {MODEL_FILES[-1]}")
    return found[0]


def load_model_with_shape(path: str | os.PathLike) -> tuple[nn.Module, list[int] | None]:
    """(model, the (C, H, W) input recorded in model.json or None); see `load_model`.

    Raises:
        ModelSourceError: no such file, or a folder without a model.
        ValueError: (ModelFileError included) a file that is not a readable model, naming it.
    """
    ckpt = model_file_of(path)
    spec_file = _model_file(ckpt.parent)
    desc = read_json(spec_file, "model description") if spec_file else {}
    shape = desc.get("input_shape") if isinstance(desc, dict) else None
    if ckpt.suffix != ".pt":
        model = pk_io.load(ckpt)
        if ckpt.suffix == ".safetensors":  # the shape the file itself records comes before a model.json's
            shape = (pk_io.read_description(ckpt).get("extra") or {}).get("input_shape") or shape
        return model, shape
    if spec_file is None:
        raise ModelSourceError(f"no {MODEL_FILE} next to {ckpt}: cannot tell which architecture it holds")
    try:
        state = load_checkpoint(ckpt)
    except (RuntimeError, EOFError, OSError) as e:  # torch's reader on truncated or foreign bytes
        raise pk_io.ModelFileError(f"{ckpt}: not a readable prunekit checkpoint ({str(e).splitlines()[0]})") from e
    model = build_arch(desc, source=str(spec_file))  # the allow-listed resolver pk.load uses
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise pk_io.ModelFileError(f"{ckpt} does not fit the architecture {spec_file} names: "
                                   f"{str(e).splitlines()[0][:300]}") from e
    return model, shape


def measure_model(model: nn.Module, example: torch.Tensor, latency_runs: int = 30, batches: Sequence[int] = (1,),
                  device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """report.json Metrics block (prunekit.measure.model_metrics) without accuracy; no timing when runs is 0."""
    return model_metrics(model.eval(), example, device=device, threads=threads,
                         latency_batches=batches if latency_runs > 0 else (),
                         warmup=max(2, latency_runs // 5), runs=max(1, latency_runs))
