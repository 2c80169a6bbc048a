"""Which convolutions onnxruntime runs in its blocked channel layout (NCHWc) on this CPU.

onnxruntime's CPU provider rewrites a convolution into its NCHWc kernels (channels in blocks of 16 with AVX-512,
8 with AVX2) only when its channel counts fit the blocks (observed: input channels a multiple of the block, or
fewer than one block as in a first layer); the others fall back to a plain kernel with layout reorders around
them. Pruned widths that are not multiples of the block can so make a pruned model slower
than the dense one (VGG-11 at 50% of its MACs ran 0.8x in benchmarks/results/speed/profile); widths rounded
to the block (`round_to=`) keep every convolution blocked.
"""
from __future__ import annotations

import collections
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_NCHWC = "com.microsoft.nchwc"
_CONV_TYPES = ("Conv", "FusedConv")


@dataclass
class OrtConvLayout:
    """Convolutions of onnxruntime's optimised graph: how many, how many in the blocked layout, the names of
    those left out, and the count of every node type."""

    convs: int
    blocked: int
    unblocked: list[str] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_size() -> int:
    """onnxruntime's NCHWc channel block on this CPU as its flags suggest: 16 with AVX-512, 8 with AVX2, else 1
    (no blocked layout). Read from /proc/cpuinfo; 1 where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 1
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


def ort_conv_layout(path: str | os.PathLike) -> OrtConvLayout:
    """Optimise the ONNX file at ``path`` as an onnxruntime CPU session does (all graph optimisations) and
    count its convolutions by layout."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX file: {path}")
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph  # node types only
    nodes = collections.Counter(f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in graph.node)
    convs = [n for n in graph.node if n.op_type in _CONV_TYPES]
    blocked = [n for n in convs if n.domain == _NCHWC]
    return OrtConvLayout(convs=len(convs), blocked=len(blocked),
                         unblocked=[n.name for n in convs if n.domain != _NCHWC], nodes=dict(nodes))
