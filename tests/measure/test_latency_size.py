"""Latency, serialized size and ONNX latency."""
import json
import struct

import numpy as np
import torch
from torch import nn

from prunekit.measure import (LatencyResult, export_onnx, file_size, latency_at_batches, measure_latency,
                              model_metrics, onnx_latency, serialized_size, speedup)


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5))


def test_measure_latency_statistics_threads_and_batch():
    model = small_cnn().train()
    previous = torch.get_num_threads()
    r = measure_latency(model, torch.randn(1, 3, 16, 16), threads=1, warmup=2, runs=15, batch_size=4)
    assert isinstance(r, LatencyResult)
    assert (r.runs, r.batch, r.threads, r.device) == (15, 4, 1, "cpu")
    assert 0 < r.median_ms <= r.p90_ms
    assert r.mean_ms > 0 and r.std_ms >= 0
    assert torch.get_num_threads() == previous      # thread count restored
    assert model.training                           # mode restored
    assert set(r.to_dict()) == {"median_ms", "p90_ms", "mean_ms", "std_ms", "runs", "batch", "threads", "device"}


def test_latency_at_batch_1_and_64_and_speedup():
    model = small_cnn()
    res = latency_at_batches(model, torch.randn(2, 3, 8, 8), warmup=1, runs=5, threads=1)
    assert sorted(res) == [1, 64]
    assert res[1].batch == 1 and res[64].batch == 64
    assert speedup(res[64], res[1]) == res[64].median_ms / res[1].median_ms


def test_latency_with_dict_inputs():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 2)

        def forward(self, x, y):
            return self.lin(x + y)

    r = measure_latency(KW(), {"x": torch.randn(3, 6), "y": torch.randn(3, 6)}, warmup=0, runs=3, batch_size=7)
    assert (r.runs, r.batch) == (3, 7)


def test_serialized_size_is_the_safetensors_byte_count(tmp_path):
    from safetensors.torch import save_file

    lin = nn.Linear(10, 3)
    size = serialized_size(lin)
    blob_path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in lin.state_dict().items()}, str(blob_path))
    assert size == file_size(blob_path)
    raw = blob_path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert set(header) - {"__metadata__"} == {"weight", "bias"}
    assert size == 8 + header_len + 4 * (30 + 3)    # float32 data follows the header


def test_serialized_size_stores_tied_weights_once_and_shrinks_with_the_model(tmp_path):
    big, small = nn.Linear(100, 100, bias=False), nn.Linear(100, 50, bias=False)
    assert serialized_size(big) - serialized_size(small) == 4 * 100 * 50

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(20, 20, bias=False)
            self.b = nn.Linear(20, 20, bias=False)
            self.b.weight = self.a.weight

    assert len(Tied().state_dict()) == 2
    assert serialized_size(Tied()) - 4 * 400 < 200   # one copy of the 20x20 matrix plus a small header
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_bytes(b"0" * 10)
    (tmp_path / "d" / "y.bin").write_bytes(b"0" * 5)
    assert file_size(tmp_path / "d") == 15


def test_onnx_export_matches_torch_and_latency(tmp_path):
    import onnxruntime as ort

    model = small_cnn().eval()
    x = torch.randn(2, 3, 16, 16)
    path = export_onnx(model, x, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 5):  # dynamic batch dimension
        xb = torch.randn(batch, 3, 16, 16)
        out = session.run(None, {"input_0": xb.numpy()})[0]
        np.testing.assert_allclose(out, model(xb).detach().numpy(), rtol=1e-4, atol=1e-5)
    r = onnx_latency(model, x, threads=1, warmup=1, runs=4, batch_size=3, onnx_path=path)
    assert (r.runs, r.batch, r.threads, r.device) == (4, 3, 1, "onnxruntime-cpu")
    assert r.median_ms > 0


def test_model_metrics_fills_the_report_metrics_block():
    from torch.utils.data import DataLoader, TensorDataset

    from prunekit.measure import count
    from prunekit.report import validate_report

    model = small_cnn()
    x = torch.randn(4, 3, 8, 8)
    loader = DataLoader(TensorDataset(torch.randn(10, 3, 8, 8), torch.randint(0, 5, (10,))), batch_size=5)
    m = model_metrics(model, x, eval_loader=loader, threads=1, latency_batches=(1, 8), warmup=1, runs=3)
    assert m["macs"] == count(model, x[:1]).macs == 8 * 8 * 8 * 3 * 9 + 8 * 5   # batch 1
    assert m["params"] == sum(p.numel() for p in model.parameters())
    assert m["size_bytes"] == serialized_size(model)
    assert m["latency_ms"] == m["latency"]["1"]["median_ms"] and m["latency"]["8"]["batch"] == 8
    assert 0.0 <= m["top1"] <= m["top5"] <= 1.0
    report = {"model": {"name": "cnn"}, "data": {"dataset": "random"}, "metrics": {"before": m, "after": None}}
    assert validate_report(report) == []


def test_onnx_keyword_inputs_keep_their_names_in_any_order(tmp_path):
    import onnxruntime as ort

    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 2)

        def forward(self, x, y):
            return self.lin(x - 2 * y)

    model, x, y = KW(), torch.randn(3, 6), torch.randn(3, 6)
    path = export_onnx(model, {"y": y, "x": x}, tmp_path / "kw.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "y"]
    out = session.run(None, {"x": x.numpy(), "y": y.numpy()})[0]
    np.testing.assert_allclose(out, model(x, y).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert onnx_latency(model, {"y": y, "x": x}, warmup=0, runs=2, batch_size=5).batch == 5
