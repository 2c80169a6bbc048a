import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.models import create
from prunekit.surgery.channel_masks import make_permanent, mask_channels

X = torch.randn(2, 1, 28, 28)


def pruned_resnet():
    torch.manual_seed(0)
    m = create("resnet20", num_classes=10, in_channels=1, width=0.5).eval()
    plan = pk.plan(m, X, ratio=0.4)
    return m, plan, pk.apply(copy.deepcopy(m), plan)


def test_save_load_round_trip_without_pickle(tmp_path):
    m, plan, p = pruned_resnet()
    path = pk.save(p, tmp_path / "r20.safetensors")
    loaded = pk.load(path)
    assert torch.equal(loaded(X), p.eval()(X))
    assert sum(t.numel() for t in loaded.parameters()) == sum(t.numel() for t in p.parameters())
    with pytest.raises(FileExistsError):
        pk.save(p, path)
    pk.save(p, path, overwrite=True)
    # pruned twice: both plans are replayed
    plan2 = pk.plan(p, X, ratio=0.3)
    p2 = pk.apply(copy.deepcopy(p), plan2)
    loaded2 = pk.load(pk.save(p2, tmp_path / "twice.safetensors"))
    assert torch.equal(loaded2(X), p2.eval()(X))


def test_load_errors(tmp_path):
    from prunekit.io import ModelFileError

    with pytest.raises(FileNotFoundError):
        pk.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        pk.load(junk)
    _, _, p = pruned_resnet()
    path = pk.save(p, tmp_path / "r.safetensors")
    with pytest.raises(ModelFileError, match="does not fit|shape"):
        pk.load(path, model=create("vgg11", num_classes=10, in_channels=1))


def test_custom_factory_needs_arch(tmp_path):
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 2)).eval()
    with pytest.raises(ValueError, match="arch"):
        pk.save(m, tmp_path / "m.safetensors")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 2)).eval()
    plan = pk.plan(model, X, ratio=0.5)
    p = pk.apply(copy.deepcopy(model), plan)
    path = pk.save(p, tmp_path / "m.safetensors", arch={"name": "custom"})
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 2))
    loaded = pk.load(path, model=fresh)
    assert torch.equal(loaded(X), p(X))


def test_onnx_export_matches(tmp_path):
    import onnxruntime as ort  # a dev dependency, installed by `make test`
    _, _, p = pruned_resnet()
    path = tmp_path / "p.onnx"
    torch.onnx.export(p, (X,), str(path), dynamo=False, input_names=["x"], output_names=["y"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": X.numpy()})
    assert abs(y - p(X).detach().numpy()).max() < 1e-4


def test_pruned_model_scripts():
    m, plan, p = pruned_resnet()
    scripted = torch.jit.script(p)
    assert torch.allclose(scripted(X), p(X), atol=1e-6)


def test_channel_masks_survive_training_then_become_permanent():
    m, plan, pruned = pruned_resnet()
    masked = mask_channels(copy.deepcopy(m).train(), plan)
    opt = torch.optim.SGD(masked.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        masked(X).logsumexp(1).sum().backward()
        opt.step()
    sd = dict(masked.named_parameters())
    for key, dim, idx in plan.removals():
        w = getattr(masked.get_submodule(key.rsplit(".", 1)[0]), key.rsplit(".", 1)[1])
        if key in dict(m.named_parameters()):
            assert float(w.index_select(dim, torch.tensor(idx)).abs().max()) == 0.0
    masked.eval()
    ref = masked(X)
    final = make_permanent(masked, plan)
    assert torch.allclose(final(X), ref, atol=1e-5)
    assert sum(t.numel() for t in final.parameters()) == sum(t.numel() for t in pruned.parameters())
    assert sd  # parameters were present while masked
