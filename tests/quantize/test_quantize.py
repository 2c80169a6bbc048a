"""int8 after pruning: accuracy of a tiny trained CNN within a stated bound of float, QAT, torchao, BatchNorm
folding, and the exact errors for bad configs and inputs."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.quantize import QuantizeConfig, QuantizeError, fold_batchnorm, quantize_model

pytestmark = pytest.mark.usefixtures("single_thread")
INT8_BOUND = 0.03   # int8 top-1 may trail float by at most 3 points on 600 test images (18 images)


class SmallCNN(nn.Module):
    def __init__(self, c: int = 32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.fc = nn.Linear(4 * c, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def _digits():
    """scikit-learn's 8x8 digits: 1,197 training and 600 test images, scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    batches = lambda xs, ys: [(xs[i:i + 64], ys[i:i + 64]) for i in range(0, len(ys), 64)]  # noqa: E731
    return batches(x[600:], y[600:]), batches(x[:600], y[:600])


@pytest.fixture(scope="module")
def trained():
    # one thread here too (the module fixture runs before the per-test single_thread): float sums then do not
    # depend on the machine's core count, so the trained model and every bound below are the same everywhere
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        train, test = _digits()
        model = SmallCNN()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(6):
            for x, y in train:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
    finally:
        torch.set_num_threads(before)
    return model.eval(), train, test


def _accuracy(model, loader):
    with torch.no_grad():
        return sum(int((model(x).argmax(1) == y).sum()) for x, y in loader) / sum(len(y) for _, y in loader)


def test_static_int8_of_pruned_cnn_within_bound(trained, tmp_path):
    model, train, test = trained
    fp32 = _accuracy(model, test)
    assert fp32 > 0.9
    x = train[0][0][:1]
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.25))
    pruned_fp32 = _accuracy(pruned, test)
    res = quantize_model(pruned, QuantizeConfig(calib_batches=4), train, out=tmp_path)
    assert res.method == "static" and res.backend == "onnxruntime" and res.calib_batches == 4
    assert len(res.folded) == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in res.model.modules())
    assert res.onnx_path == tmp_path / "model.int8.onnx" and res.size_bytes < 0.6 * res.fp32_size_bytes
    int8 = res.accuracy(test)
    assert int8 >= pruned_fp32 - INT8_BOUND, (pruned_fp32, int8)
    assert isinstance(pruned.features[1], nn.BatchNorm2d)                      # the caller's model keeps its norms
    with pytest.raises(FileExistsError, match="model.int8.onnx exists; pass overwrite=True"):
        quantize_model(pruned, QuantizeConfig(calib_batches=1), train, out=tmp_path)


def test_reduce_range_follows_the_cpu_unless_given(tmp_path, monkeypatch):
    """None: 7-bit weights on an x86 CPU without VNNI (uint8 x int8 kernels that can saturate), 8-bit with VNNI
    or off x86; an explicit choice always wins."""
    import platform

    from prunekit.quantize import ort_quant
    with_vnni, without = tmp_path / "vnni", tmp_path / "plain"
    with_vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert ort_quant.cpu_has_vnni(with_vnni) is True and ort_quant.cpu_has_vnni(without) is False
    assert ort_quant.cpu_has_vnni(tmp_path / "missing") is None
    for flags, want in ((without, True), (with_vnni, False), (tmp_path / "missing", True)):
        monkeypatch.setattr(ort_quant, "cpu_has_vnni", lambda path=flags, real=ort_quant.cpu_has_vnni: real(path))
        assert ort_quant.resolve_reduce_range(QuantizeConfig()) is want
        assert ort_quant.resolve_reduce_range(QuantizeConfig(reduce_range=not want)) is (not want)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert ort_quant.cpu_has_vnni(with_vnni) is None
    assert ort_quant.resolve_reduce_range(QuantizeConfig()) is False


def test_reduce_range_is_recorded_and_changes_the_weights(trained, tmp_path):
    model, train, test = trained
    seven = quantize_model(model, QuantizeConfig(calib_batches=2, reduce_range=True), train, out=tmp_path / "7")
    eight = quantize_model(model, QuantizeConfig(calib_batches=2, reduce_range=False), train, out=tmp_path / "8")
    assert seven.reduce_range is True and seven.to_dict()["reduce_range"] is True
    assert eight.reduce_range is False and eight.to_dict()["reduce_range"] is False
    assert seven.onnx_path.read_bytes() != eight.onnx_path.read_bytes()
    import onnx
    from onnx import numpy_helper
    ints = [numpy_helper.to_array(t) for t in onnx.load(seven.onnx_path).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and t.dims and len(t.dims) == 4]
    assert ints and max(int(abs(a.astype(int)).max()) for a in ints) <= 64  # 7 bits: [-64, 63]
    assert seven.accuracy(test) >= _accuracy(model, test) - INT8_BOUND


def test_same_seed_same_int8_file(trained, tmp_path):
    model, train, _ = trained
    a = quantize_model(model, QuantizeConfig(calib_batches=2), train, out=tmp_path / "a")
    b = quantize_model(model, QuantizeConfig(calib_batches=2), train, out=tmp_path / "b")
    assert a.onnx_path.read_bytes() == b.onnx_path.read_bytes()


def test_qat_distilled_from_dense_recovers_the_pruned_model(trained):
    model, train, test = trained
    x = train[0][0][:1]
    pruned = pk.apply(copy.deepcopy(model), pk.plan(model, x, ratio=0.25))
    ptq = quantize_model(pruned, QuantizeConfig(calib_batches=2), train).accuracy(test)
    # three epochs of 19 steps: with one, QAT's margin over the bounds below was a few test images, and the
    # int8 kernels (hence PTQ and QAT accuracy) differ between CPUs
    cfg = QuantizeConfig(calib_batches=2, qat_epochs=3, qat_lr=0.01)
    res = quantize_model(pruned, cfg, train, teacher=model)
    assert res.qat.steps == 57 and res.qat.layers == 3 and len(res.qat.losses) == 3
    assert not any(hasattr(m, "parametrizations") for m in res.model.modules())   # fake-quant removed
    assert set(res.model.state_dict()) == set(fold_copy(pruned).state_dict())
    assert all(p.requires_grad for p in model.parameters())                      # the teacher is untouched
    qat = res.accuracy(test)
    assert qat >= ptq + 0.1 and qat >= _accuracy(model, test) - 0.06, (ptq, qat)


def fold_copy(model):
    m = copy.deepcopy(model).eval()
    fold_batchnorm(m)
    return m


def test_fold_batchnorm_is_exact(trained):
    model, train, _ = trained
    folded = fold_copy(model)
    x = train[0][0]
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0
    with pytest.raises(QuantizeError, match="fold_batchnorm needs the model in eval mode"):
        fold_batchnorm(copy.deepcopy(model).train())


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.flatten(1))))


@pytest.mark.parametrize("backend,method", [("onnxruntime", "dynamic"), ("torchao", "dynamic"),
                                            ("torchao", "weight_only")])
def test_linear_net_int8(backend, method):
    torch.manual_seed(0)
    model = MLP().eval()
    loader = [(torch.randn(16, 64), torch.randint(0, 10, (16,)))]
    res = quantize_model(model, QuantizeConfig(backend=backend, method=method), loader)
    assert res.method == method and res.backend == backend
    assert res.size_bytes < res.fp32_size_bytes / 2.5
    with torch.no_grad():
        ref = model(loader[0][0]).numpy()
    assert np.max(np.abs(res.predict(loader[0][0]) - ref)) < 0.05 * np.max(np.abs(ref)) + 0.02


def test_auto_picks_dynamic_for_linear_nets():
    res = quantize_model(MLP().eval(), QuantizeConfig(), example_inputs=torch.randn(1, 64))
    assert res.method == "dynamic" and res.calib_batches == 0


def test_config_errors():
    with pytest.raises(TypeError, match=r"QuantizeConfig.from_dict got unexpected keyword argument\(s\) 'calib' "
                                       r"\(did you mean 'calibration'\?\); valid keywords: .*calib_batches"):
        QuantizeConfig.from_dict({"calib": 3})
    with pytest.raises(TypeError, match="unexpected keyword argument 'bits'"):
        QuantizeConfig(bits=8)
    with pytest.raises(QuantizeError, match="QuantizeConfig.method='int4': choose one of auto, static, dynamic, "
                                            "weight_only"):
        QuantizeConfig(method="int4")
    with pytest.raises(QuantizeError, match="backend 'onnxruntime' does not do method 'weight_only'"):
        QuantizeConfig(method="weight_only")
    with pytest.raises(QuantizeError, match=r"QuantizeConfig.calib_batches=0: must be an integer >= 1"):
        QuantizeConfig(calib_batches=0)
    with pytest.raises(QuantizeError, match="QAT \\(qat_epochs > 0\\) calibrates static int8"):
        QuantizeConfig(method="dynamic", qat_epochs=1)
    with pytest.raises(QuantizeError, match=r"QuantizeConfig.alpha=2: must be in \[0, 1\]"):
        QuantizeConfig(alpha=2)
    with pytest.raises(QuantizeError, match="reduce_range=1: must be True, False or None"):
        QuantizeConfig(reduce_range=1)
    with pytest.raises(QuantizeError, match="reduce_range is an onnxruntime setting; backend 'torchao'"):
        QuantizeConfig(backend="torchao", method="dynamic", reduce_range=True)
    assert QuantizeConfig.from_dict(QuantizeConfig(calib_batches=3).to_dict()) == QuantizeConfig(calib_batches=3)


def test_input_errors(trained):
    model, train, _ = trained
    with pytest.raises(QuantizeError, match="static int8 needs calib_loader"):
        quantize_model(model, QuantizeConfig(method="static"), None, example_inputs=torch.randn(1, 1, 8, 8))
    with pytest.raises(QuantizeError, match="the calibration loader gave no batches"):
        quantize_model(model, QuantizeConfig(method="static"), [])
    with pytest.raises(QuantizeError, match="the model does not run on the example inputs: RuntimeError"):
        quantize_model(model, QuantizeConfig(), [(torch.randn(4, 3, 8, 8), torch.zeros(4))])
    with pytest.raises(QuantizeError, match="backend 'torchao' quantizes Linear layers and the model has none"):
        quantize_model(nn.Sequential(nn.Conv2d(1, 2, 3)).eval(), QuantizeConfig(backend="torchao"),
                       example_inputs=torch.randn(1, 1, 8, 8))
    with pytest.raises(QuantizeError, match="expected a torch.nn.Module to quantize, got str"):
        quantize_model("model.onnx", QuantizeConfig(), train)
    with pytest.raises(TypeError, match="config must be a QuantizeConfig or dict, got int"):
        quantize_model(model, 8, train)


def test_workflow_step_options(trained):
    from prunekit.quantize import int8_step
    from prunekit.workflow import QuantizeConfig as StepConfig
    model, train, test = trained
    x = train[0][0][:1]
    same, info = int8_step(model, x, train, StepConfig("int8", calib_batches=1, options={"per_channel": False}),
                           test_loader=test[:2], latency_runs=0)
    assert same is model and info["result"]["config"]["per_channel"] is False
    assert info["metrics"]["int8"]["calib_batches"] == 1 and info["metrics"]["after_latency_by_runtime"] is None
    with pytest.raises(TypeError, match=r"QuantizeConfig.from_dict got unexpected keyword argument\(s\) 'bits'; valid "):
        int8_step(model, x, train, StepConfig("int8", options={"bits": 4}), latency_runs=0)
    with pytest.raises(TypeError, match="calib_batches is the workflow QuantizeConfig's own field"):
        int8_step(model, x, train, StepConfig("int8", options={"calib_batches": 2}), latency_runs=0)
