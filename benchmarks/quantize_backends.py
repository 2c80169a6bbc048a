"""Which int8 path runs fastest on this CPU: one model per family, every backend, alternated run by run.

ResNet-20 (full width, 1x28x28) at batch 64: torch eager float32, onnxruntime float32, onnxruntime static
int8 (QDQ and QOperator, per channel and per tensor), PT2E (X86InductorQuantizer) int8 under torch.compile
and torch.compile float32. all-MiniLM-L6-v2 (batch 64, 32 tokens): torch float32, onnxruntime float32,
onnxruntime dynamic and static int8, torchao Int8DynamicActivationInt8Weight and Int8WeightOnly. Weights are
random (speed only). Results: benchmarks/results/quantize/backends.json and .md.

    python benchmarks/quantize_backends.py [--runs 10] [--threads 1] [--no-compile]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from prunekit.bench.output import command_line, environment
from prunekit.bench.timing import _alternate
from prunekit.quantize.export import write_onnx
from prunekit.quantize.runtime import feed, session


def ort_quantized(src: Path, dst: Path, static: bool, fmt: str = "QDQ", per_channel: bool = True,
                  calib: list | None = None, ops: list[str] | None = None) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    if not static:
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=ops)
        return dst

    class Reader:
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(pre), str(dst), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops)
    return dst


def cnn(tmp: Path, threads: int, compile_: bool) -> dict:
    from prunekit.models import create
    model = create("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fp32 = write_onnx(model, x[:1], tmp / "r20.onnx")
    calib = [{"input_0": torch.randn(64, 1, 28, 28).numpy()} for _ in range(4)]
    fns, notes = {"torch fp32 (eager)": lambda: model(x)}, {}
    files = {"onnxruntime fp32": fp32}
    for fmt in ("QDQ", "QOperator"):
        for pc in (True, False):
            name = f"onnxruntime int8 static {fmt} {'per-channel' if pc else 'per-tensor'}"
            files[name] = ort_quantized(fp32, tmp / f"r20-{fmt}-{pc}.onnx", True, fmt, pc, calib)
    for name, path in files.items():
        s = session(path, threads)
        fns[name] = lambda s=s, f=feed(s, x): s.run(None, f)
    if compile_:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
        t0 = time.perf_counter()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
        for c in calib:
            prepared(torch.from_numpy(c["input_0"]))
        q = torch.compile(convert_pt2e(prepared))
        q(x)
        notes["pt2e_prepare_and_compile_s"] = time.perf_counter() - t0
        f = torch.compile(copy.deepcopy(model))
        f(x)
        fns["PT2E X86Inductor int8 (torch.compile)"] = lambda: q(x)
        fns["torch fp32 (torch.compile)"] = lambda: f(x)
    return {"fns": fns, "notes": notes}


def minilm(tmp: Path, threads: int) -> dict:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    from transformers import AutoModel

    from prunekit.bench.quantize_text import model_path

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = AutoModel.from_pretrained(str(model_path()), local_files_only=True)

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    model = Encoder().eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(1000, 20000, (64, 32), generator=g), torch.ones(64, 32, dtype=torch.long))
    fp32 = write_onnx(model, tuple(t[:1] for t in x), tmp / "minilm.onnx")
    calib = [{"input_0": x[0].numpy(), "input_1": x[1].numpy()}]
    files = {"onnxruntime fp32": fp32,
             "onnxruntime int8 dynamic": ort_quantized(fp32, tmp / "m-dyn.onnx", False,
                                                       ops=["MatMul", "Gemm", "Gather"]),
             "onnxruntime int8 static QDQ": ort_quantized(fp32, tmp / "m-st.onnx", True, calib=calib,
                                                          ops=["MatMul", "Gemm"])}
    fns = {"torch fp32 (eager)": lambda: model(*x)}
    for name, path in files.items():
        s = session(path, threads)
        fns[name] = lambda s=s, f=feed(s, x): s.run(None, f)
    for name, cfg in (("torchao Int8DynamicActivationInt8Weight", Int8DynamicActivationInt8WeightConfig()),
                      ("torchao Int8WeightOnly", Int8WeightOnlyConfig())):
        q = copy.deepcopy(model)
        quantize_(q, cfg)
        fns[name] = lambda q=q: q(*x)
    return {"fns": fns, "notes": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (they compile ~30 s)")
    ap.add_argument("--out", default="benchmarks/results/quantize")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {"command": command_line(), **environment(), "runs": args.runs, "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name, build in (("resnet20 (batch 64)", lambda: cnn(Path(tmp), args.threads, not args.no_compile)),
                            ("all-MiniLM-L6-v2 (batch 64 x 32 tokens)", lambda: minilm(Path(tmp), args.threads))):
            made = build()
            ms = _alternate(made["fns"], args.runs, warmup=2)
            results["models"][name] = {"median_ms": ms, **made["notes"]}
            print(name, json.dumps(ms, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# int8 backends on this CPU", "", f"`{results['command']}`, {args.threads} thread(s), median of "
             f"{args.runs} runs alternated across backends; load average at the end {os.getloadavg()[0]:.1f}.", ""]
    for name, r in results["models"].items():
        base = r["median_ms"]["torch fp32 (eager)"]
        lines += [f"## {name}", "", "| backend | ms | vs torch fp32 |", "|---|---:|---:|"]
        ordered = sorted(r["median_ms"].items(), key=lambda kv: kv[1])
        lines += [f"| {k} | {v:.2f} | {base / v:.2f}x |" for k, v in ordered]
        lines.append("")
    (out / "backends.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
