"""Running ONNX files in onnxruntime next to the PyTorch model: sessions, feeds, outputs, accuracy, latency."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ..measure.inputs import Inputs, batch_size_of, call_model, rebatch
from ..measure.latency import LatencyResult, summarize, time_callable
from ..utils.inputs import as_call as positional
from .config import QuantizeError


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export and int8 need onnxruntime: pip install 'prunekit[quant]'") from e
    return ort


def session(path: str | os.PathLike, threads: int | None = None):
    """A CPU onnxruntime InferenceSession for ``path``; ``threads`` fixes the intra-op thread count."""
    ort = _ort()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX file: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise QuantizeError(f"{path} is not a valid ONNX model for onnxruntime: {str(e).splitlines()[0]}") from e


def feed(sess, inputs: Inputs) -> dict[str, np.ndarray]:
    """The session's input dict from example inputs (positional ones are input_0, input_1, ...)."""
    args, kwargs = positional(inputs)
    tensors = {**{f"input_{i}": a for i, a in enumerate(args)}, **kwargs}
    out = {}
    for spec in sess.get_inputs():
        if spec.name not in tensors:
            raise QuantizeError(f"the ONNX model wants input {spec.name!r}; the inputs give "
                                f"{sorted(tensors) or 'nothing'}")
        value = tensors[spec.name]
        if not isinstance(value, torch.Tensor):
            raise QuantizeError(f"input {spec.name!r} is a {type(value).__name__}, not a tensor")
        if len(spec.shape) != value.dim():
            raise QuantizeError(f"input {spec.name!r} has {value.dim()} dimensions {tuple(value.shape)}; the ONNX "
                                f"model wants {len(spec.shape)} {tuple(spec.shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(want, int) and want != got:
                raise QuantizeError(f"input {spec.name!r} has shape {tuple(value.shape)}; the ONNX model wants "
                                    f"{tuple(spec.shape)} (dimension {axis} differs)")
        out[spec.name] = value.detach().cpu().numpy()
    return out


def torch_outputs(model: nn.Module, inputs: Inputs) -> list[np.ndarray]:
    """The model's outputs on ``inputs`` (eval mode, no grad), flattened to a list of arrays."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = call_model(model, inputs)
    finally:
        model.train(was_training)
    leaves, _ = tree_flatten(out)
    return [t.detach().float().cpu().numpy() for t in leaves if isinstance(t, torch.Tensor)]


def max_abs_diff(model: nn.Module, sess, inputs: Inputs) -> float:
    """Largest |PyTorch - onnxruntime| over every output of ``inputs``; a shape or count mismatch raises."""
    ref = torch_outputs(model, inputs)
    got = sess.run(None, feed(sess, inputs))
    if len(got) < 1 or len(got) > len(ref):
        raise QuantizeError(f"the ONNX model returns {len(got)} outputs, PyTorch {len(ref)}")
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        if r.shape != g.shape:
            raise QuantizeError(f"output {i}: PyTorch shape {r.shape}, onnxruntime {g.shape}")
        worst = max(worst, float(np.max(np.abs(r - g.astype(np.float32)))) if r.size else 0.0)
    return worst


def ort_latency(sess, inputs: Inputs, batches: Sequence[int] = (1, 64), warmup: int = 5, runs: int = 30,
                threads: int | None = None) -> dict[int, LatencyResult]:
    """Median onnxruntime latency at each batch size (the inputs are re-batched by repeating samples)."""
    result = {}
    for b in batches:
        data = feed(sess, rebatch(inputs, int(b)))
        times = time_callable(lambda: sess.run(None, data), warmup, runs)
        result[int(b)] = summarize(times, int(b), threads, "onnxruntime-cpu")
    return result


def batch_inputs(batch: Any) -> tuple[Inputs, Any]:
    """(model inputs, labels or None) of one loader batch: (inputs, targets), {"input", "target"}, or inputs."""
    if isinstance(batch, dict) and "input" in batch:
        return batch["input"], batch.get("target")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    return batch, None


def ort_accuracy(sess, loader: Iterable, max_batches: int | None = None) -> float:
    """Top-1 accuracy of the session's first output over a labelled loader."""
    correct = total = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        inputs, labels = batch_inputs(batch)
        if labels is None:
            raise QuantizeError("accuracy needs labelled batches: (inputs, targets) or {'input': .., 'target': ..}")
        logits = sess.run(None, feed(sess, inputs))[0]
        correct += int((np.argmax(logits, axis=-1) == labels.numpy()).sum())
        total += int(batch_size_of(inputs) or 0)
    if total == 0:
        raise QuantizeError("the evaluation loader gave no batches")
    return correct / total
