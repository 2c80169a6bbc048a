"""`pk.export`: a (pruned) model to ONNX with a dynamic batch, checked in onnxruntime against PyTorch."""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..measure.inputs import Inputs, batch_size_of, call_model, model_device, rebatch, to_device
from ..measure.onnx import input_names
from ..measure.ort_layout import OrtConvLayout, block_size, ort_conv_layout
from ..utils import atomic_write
from .config import QuantizeError
from .runtime import max_abs_diff, ort_latency, positional, session


class ExportError(QuantizeError):
    """The exported ONNX model does not reproduce the PyTorch model (or could not be written)."""


@dataclass
class ExportResult:
    """What `export` wrote and how well onnxruntime reproduces PyTorch on it.

    path: the ONNX file. size_bytes: its size. max_abs_diff: the largest |PyTorch - onnxruntime| over all
    outputs at every checked batch size. atol: the tolerance it was held to. checked_batches: batch sizes
    compared (the example's and another one, to prove the batch dimension is dynamic). latency_ms: median
    onnxruntime latency per batch size. input_names: the graph's inputs. conv_layout: how many convolutions
    onnxruntime runs in its blocked (NCHWc) layout; those left out run slower per MAC (see `layout_hint`).
    """

    path: Path
    size_bytes: int
    max_abs_diff: float
    atol: float
    checked_batches: list[int]
    latency_ms: dict[int, float] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)
    conv_layout: OrtConvLayout | None = None

    @property
    def layout_hint(self) -> str | None:
        """A line on the convolutions onnxruntime leaves out of its blocked layout, None when there are none."""
        lay = self.conv_layout
        if lay is None or lay.blocked == lay.convs:
            return None
        b = block_size()
        fix = (f"prune with widths that are multiples of {b} (round_to={b}, --round-to {b}) to keep them blocked"
               if b > 1 else "this CPU has no blocked layout (no AVX2)")
        return (f"{lay.convs - lay.blocked} of {lay.convs} convolutions run outside onnxruntime's blocked NCHWc "
                f"layout (their channel counts do not fit its blocks); {fix}")

    @property
    def passed(self) -> bool:
        """Whether onnxruntime agrees with PyTorch within ``atol``."""
        return self.max_abs_diff <= self.atol

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"], d["passed"], d["layout_hint"] = str(self.path), self.passed, self.layout_hint
        d["latency_ms"] = {str(k): v for k, v in self.latency_ms.items()}
        return d


def check_example_inputs(model: nn.Module, example_inputs: Inputs) -> None:
    """Raise a QuantizeError naming the problem when ``example_inputs`` cannot drive ``model``."""
    if not isinstance(model, nn.Module):
        raise QuantizeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if batch_size_of(example_inputs) is None:
        raise QuantizeError(f"example_inputs must hold a batched tensor (a tensor, tuple or dict of tensors), "
                            f"got {type(example_inputs).__name__}")
    was_training = model.training
    try:
        with torch.inference_mode():
            call_model(model.eval(), example_inputs)
    except Exception as e:  # noqa: BLE001 - any failure here is the caller's inputs not fitting the model
        raise QuantizeError(f"the model does not run on the example inputs: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        model.train(was_training)


def _torch_onnx_export(model: nn.Module, example_inputs: Inputs, path: Path, opset: int) -> None:
    """torch.onnx.export with a symbolic batch dimension on every input.

    The TorchScript exporter goes first (fast and reliable for CNNs on torch 2.14); models it cannot take
    (keyword inputs of Hugging Face models, for one) go through the torch.export-based exporter, which gets
    the same dynamic axes. When both fail, the error of each is reported.
    """
    import warnings

    args, kwargs = positional(example_inputs)
    names = input_names(model, args, kwargs)
    dynamic = {n: {0: "batch"} for n in names}
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, args, str(path), kwargs=kwargs or None, input_names=names,
                                  dynamic_axes=dynamic, opset_version=max(opset, 18) if dynamo else opset,
                                  dynamo=dynamo, verbose=False)
            return
        except Exception as e:  # noqa: BLE001 - each exporter raises its own error types
            errors.append(f"{'torch.export' if dynamo else 'TorchScript'} exporter: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}")
    raise ExportError(f"cannot export {type(model).__name__} to ONNX: " + "; ".join(errors))


def write_onnx(model: nn.Module, example_inputs: Inputs, path: str | os.PathLike, opset: int = 17,
               overwrite: bool = False) -> Path:
    """Write the ONNX file atomically (a temporary file renamed into place); never replaces a file unasked."""
    path = Path(path)
    if path.is_dir():  # overwrite never replaces a folder
        raise IsADirectoryError(f"{path} is a folder; give the .onnx file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    return atomic_write(path, lambda tmp: _torch_onnx_export(model, example_inputs, Path(tmp), opset), overwrite)


def export(model: nn.Module, example_inputs: Inputs, path: str | os.PathLike, *, opset: int = 17,
           atol: float = 1e-4, overwrite: bool = False, latency_batches: Sequence[int] = (1,),
           runs: int = 20, threads: int | None = None, strict: bool = True) -> ExportResult:
    """Export ``model`` to ONNX at ``path`` and check it in onnxruntime.

    The graph has a dynamic batch dimension; the check runs the example batch and a batch of another size
    through PyTorch and onnxruntime and records the largest absolute difference.

    Args:
        model: the (pruned) model; exported in eval mode, on CPU.
        example_inputs: a tensor, a tuple of tensors or a dict of keyword tensors.
        path: the .onnx file to write.
        opset: ONNX opset.
        atol: tolerance on the largest absolute output difference.
        overwrite: replace an existing file.
        latency_batches: batch sizes timed in onnxruntime (empty: no timing).
        runs: timed runs per batch size.
        threads: onnxruntime intra-op threads (None: its default).
        strict: raise ExportError when the difference exceeds ``atol`` (the file stays, for inspection).

    Returns:
        ExportResult.

    Example:
        >>> res = pk.export(pruned, torch.randn(1, 3, 32, 32), "pruned.onnx")
        >>> res.max_abs_diff, res.size_bytes, res.latency_ms[1]
    """
    if not isinstance(atol, (int, float)) or atol < 0:
        raise QuantizeError(f"atol={atol!r}: must be a number >= 0")
    check_example_inputs(model, example_inputs)
    # the caller's model keeps its device and mode: a model elsewhere than the CPU is exported from a copy
    net = model if model_device(model).type == "cpu" else copy.deepcopy(model).cpu()
    example_inputs = to_device(example_inputs, "cpu")
    was_training = net.training
    net.eval()
    try:
        path = write_onnx(net, example_inputs, path, opset, overwrite)
        sess = session(path, threads)
        first = int(batch_size_of(example_inputs))
        checked = [first, first + 2]
        try:
            diff = max(max_abs_diff(net, sess, rebatch(example_inputs, b)) for b in checked)
        except QuantizeError as e:
            raise ExportError(f"{path}: onnxruntime cannot run the exported model like PyTorch ({e}); the batch "
                              "dimension may not be dynamic") from e
    finally:
        net.train(was_training)
    lat = ort_latency(sess, example_inputs, latency_batches, runs=runs, threads=threads) if latency_batches else {}
    result = ExportResult(path=path, size_bytes=path.stat().st_size, max_abs_diff=diff, atol=float(atol),
                          checked_batches=checked, latency_ms={b: r.median_ms for b, r in lat.items()},
                          input_names=[i.name for i in sess.get_inputs()], conv_layout=ort_conv_layout(path))
    if strict and not result.passed:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} > atol {atol:g}")
    return result
