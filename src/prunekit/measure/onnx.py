"""ONNX export and onnxruntime latency (optional: needs the ``export`` extra, onnx + onnxruntime)."""
from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..utils.inputs import as_call
from .inputs import Inputs, batch_size_of, model_device, rebatch, to_device
from .latency import LatencyResult, summarize, time_callable


def input_names(model: nn.Module, args: tuple, kwargs: dict) -> list[str]:
    """ONNX input names in graph order: input_0, input_1... for positional inputs, then keyword inputs by
    their argument names in the order of ``forward``'s signature."""
    try:
        order = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        order = []
    keyed = sorted(kwargs, key=lambda k: order.index(k) if k in order else len(order))
    return [f"input_{i}" for i in range(len(args))] + keyed


def export_onnx(model: nn.Module, example_inputs: Inputs, path: str | os.PathLike, opset: int = 17,
                dynamic_batch: bool = True) -> Path:
    """Export ``model`` to ONNX at ``path``, in eval mode, with a dynamic batch dimension.

    Uses the TorchScript exporter (``dynamo=False``): on torch 2.14 it is the fast and reliable path for the
    plain CNNs here; the ``torch.export`` path is tried only if it fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args, kwargs = as_call(to_device(example_inputs, model_device(model)))
    names = input_names(model, args, kwargs)
    dynamic = {n: {0: "batch"} for n in names} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, args, str(path), kwargs=kwargs or None, input_names=names,
                                  output_names=["output"], dynamic_axes=dynamic, opset_version=opset,
                                  dynamo=False)
            except Exception:  # noqa: BLE001 - fall back to the other exporter, re-raise if it fails too
                torch.onnx.export(model, args, str(path), kwargs=kwargs or None, input_names=names,
                                  output_names=["output"], opset_version=max(opset, 18), dynamo=True)
    finally:
        model.train(was_training)
    return path


def onnx_latency(model: nn.Module, example_inputs: Inputs, threads: int | None = None, warmup: int = 10,
                 runs: int = 50, batch_size: int | None = None, onnx_path: str | os.PathLike | None = None,
                 ) -> LatencyResult:
    """Latency of the model exported to ONNX and run by onnxruntime on CPU (median after warm-up).

    ``threads`` sets onnxruntime's intra-op thread count; ``onnx_path`` reuses an already exported file.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("onnx_latency needs onnxruntime: pip install 'prunekit[export]'") from e
    inputs = rebatch(example_inputs, batch_size) if batch_size is not None else example_inputs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_path) if onnx_path else export_onnx(model, inputs, Path(tmp) / "model.onnx")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        args, kwargs = as_call(inputs)
        tensors = {**{f"input_{i}": a for i, a in enumerate(args)}, **kwargs}
        feed = {i.name: tensors[i.name].detach().cpu().numpy() for i in session.get_inputs()}
        times = time_callable(lambda: session.run(None, feed), warmup, runs)
    return summarize(times, batch_size_of(inputs), threads, "onnxruntime-cpu")
