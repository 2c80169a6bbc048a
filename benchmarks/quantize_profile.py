"""Where onnxruntime spends the time of ResNet-20 int8 and float32, dense and pruned (widths multiples of 8).

Random weights (speed only), batch 64, one thread, 10 profiled runs each; prints the share of kernel time per
operator type. The README's reading of the quantize suite quotes it.

    python benchmarks/quantize_profile.py
"""
from __future__ import annotations

import collections
import copy
import json
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

import prunekit as pk
from prunekit.models import create
from prunekit.quantize import QuantizeConfig, quantize_model
from prunekit.quantize.runtime import feed


def profile(path: Path, x: torch.Tensor, prefix: str, runs: int = 10) -> collections.Counter:
    """Microseconds of kernel time per operator type over ``runs`` runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    data = feed(sess, x)
    for _ in range(runs):
        sess.run(None, data)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    return per_op


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = create("resnet20", num_classes=10, in_channels=1).eval()
    x1 = torch.randn(1, 1, 28, 28)
    plan = pk.plan(dense, x1, target=pk.Target(macs=0.5), criterion="l1", policy="uniform", round_to=8)
    pruned = pk.apply(copy.deepcopy(dense), plan)
    calib = [(torch.randn(64, 1, 28, 28), torch.zeros(64, dtype=torch.long)) for _ in range(2)]
    xb = torch.randn(64, 1, 28, 28)
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("dense", dense), ("pruned", pruned)):
            res = quantize_model(model, QuantizeConfig(calib_batches=2), calib, out=Path(tmp) / name)
            for label, path in (("int8", res.onnx_path), ("fp32", res.fp32_onnx_path)):
                per_op = profile(path, xb, str(Path(tmp) / f"{name}_{label}"))
                total = sum(per_op.values())
                shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in per_op.most_common(4))
                print(f"{name:6s} {label}: {total / 10 / 1000:6.1f} ms per run; {shares}")


if __name__ == "__main__":
    main()
