"""Loading a file executes nothing the file names: architectures resolve only through allow-listed registries
(prunekit's, torchvision's, timm's, transformers' own classes); anything else needs model= or factory=."""
import json
import re

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cli import main as cli_main
from prunekit.compress import load_compressed, save_compressed
from prunekit.io import read_description

from .files_helpers import X, pruned_lenet, write_described


def _hostile(marker):
    return [
        {"factory": "os:system", "kwargs": {"command": f"touch {marker}"}},
        {"factory": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}},
        {"factory": "builtins:exec", "kwargs": {"source": f"open({str(marker)!r}, 'w')"}},
        {"library": "os", "name": "system", "kwargs": {"command": f"touch {marker}"}},
        {"name": "os:system", "kwargs": {"command": f"touch {marker}"}},
        {"library": "transformers", "class": "os", "config": {"model_type": "gpt2"}},
        {"library": "transformers", "class": "transformers.utils.import_utils:os", "config": {"model_type": "gpt2"}},
        {"library": "timm", "name": "os.system", "kwargs": {}},
        {"library": "torchvision", "name": "os.system", "kwargs": {}},
    ]


@pytest.mark.parametrize("case", range(9))
def test_a_hostile_description_runs_nothing_and_names_the_factory(tmp_path, case):
    marker = tmp_path / "pwned"
    arch = _hostile(marker)[case]
    path = write_described(tmp_path / "evil.safetensors", arch)
    with pytest.raises(pk.ModelFileError) as err:
        pk.load(path)
    msg = str(err.value)
    assert str(path) in msg and "model=" in msg and "factory=" in msg
    named = arch.get("factory") or arch.get("class") or arch.get("name")
    if case < 3:
        assert repr(named) in msg
    assert not marker.exists()
    # the command line reads the same file through the same loader
    assert cli_main(["info", str(path), "--runs", "0"]) == 2
    assert not marker.exists()


def test_options_that_would_fetch_or_read_weights_are_refused(tmp_path):
    cases = [
        ({"library": "timm", "name": "resnet10t", "kwargs": {"checkpoint_path": "/etc/passwd"}},
         "timm kwargs ['checkpoint_path'] would read weights"),
        ({"library": "timm", "name": "resnet10t", "kwargs": {"pretrained": True}}, "timm kwargs ['pretrained']"),
        ({"library": "torchvision", "name": "resnet18", "kwargs": {"weights": "DEFAULT"}},
         "torchvision kwargs weights='DEFAULT' would download weights"),
        ({"library": "transformers", "class": "AutoModel",
          "config": {"model_type": "gpt2", "auto_map": {"AutoModel": "evil--modeling.Evil"}}},
         "asks for remote code (['auto_map'])"),
    ]
    for i, (arch, message) in enumerate(cases):
        path = write_described(tmp_path / f"{i}.safetensors", arch)
        with pytest.raises(pk.ModelFileError, match=re.escape(message)):
            pk.load(path)


def test_the_caller_passes_a_factory_or_a_model_for_unlisted_architectures(tmp_path):
    def build(channels: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(), nn.Linear(channels * 26 * 26, 3))

    torch.manual_seed(0)
    m = build(6).eval()
    plan = pk.plan(m, X, ratio=0.5)
    p = pk.apply(m, plan)
    path = pk.save(p, tmp_path / "own.safetensors", arch={"factory": "mypkg.nets:build", "kwargs": {"channels": 6}})
    with pytest.raises(pk.ModelFileError, match="'mypkg.nets:build' is not in an allow-listed registry"):
        pk.load(path)
    by_factory = pk.load(path, factory=build)
    by_model = pk.load(path, model=build(6))
    assert by_factory[0].out_channels == by_model[0].out_channels == 3
    assert torch.equal(by_factory(X), p(X)) and torch.equal(by_model(X), p(X))
    with pytest.raises(TypeError, match="not both"):
        pk.load(path, model=build(6), factory=build)


def test_old_factory_strings_map_onto_the_registries(tmp_path):
    import torchvision.models as tvm

    torch.manual_seed(0)
    model = tvm.squeezenet1_1(num_classes=4).eval()
    path = pk.save(model, tmp_path / "sq.safetensors", arch={"factory": "torchvision.models:squeezenet1_1",
                                                              "kwargs": {"num_classes": 4}})
    back = pk.load(path)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert isinstance(back, tvm.SqueezeNet) and torch.equal(back(x), model(x))
    assert read_description(path)["arch"]["factory"] == "torchvision.models:squeezenet1_1"


def test_timm_models_rebuild_through_timm_registry(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plan = pk.plan(model, x, ratio=0.25)
    pruned = pk.apply(model, plan)
    path = pk.save(pruned, tmp_path / "t.safetensors", arch={"library": "timm", "name": "resnet10t",
                                                             "kwargs": {"num_classes": 3}})
    legacy = pk.save(pruned, tmp_path / "old.safetensors", arch={"factory": "timm:create_model",
                                                                 "kwargs": {"model_name": "resnet10t", "num_classes": 3}})
    for p in (path, legacy):
        back = pk.load(p)
        assert torch.equal(back(x), pruned(x))
        assert sum(t.numel() for t in back.parameters()) == sum(t.numel() for t in pruned.parameters())


def test_transformers_models_rebuild_from_their_config_and_class_name(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16)).eval()
    path = pk.save(model, tmp_path / "gpt2.safetensors")
    arch = read_description(path)["arch"]
    assert (arch["library"], arch["class"], arch["config"]["model_type"]) == ("transformers", "GPT2LMHeadModel", "gpt2")
    ids = torch.tensor([[1, 5, 7, 2]])
    back = pk.load(path)
    assert type(back) is GPT2LMHeadModel and torch.equal(back(ids).logits, model(ids).logits)


def test_a_compressed_container_goes_through_the_same_resolver(tmp_path):
    marker = tmp_path / "pwned"
    _, p, _ = pruned_lenet()
    path = tmp_path / "evil.pkz"
    save_compressed(p, path, description={"name": "lenet5", "factory": "os:system",
                                          "kwargs": {"command": f"touch {marker}"}})
    for load in (pk.load, load_compressed):
        with pytest.raises(pk.ModelFileError, match="'os:system' is not in an allow-listed registry"):
            load(path)
    assert not marker.exists()


def test_registry_names_still_load_and_unknown_ones_say_so(tmp_path):
    _, p, _ = pruned_lenet()
    path = pk.save(p, tmp_path / "ok.safetensors")
    assert torch.equal(pk.load(path)(X), p(X))
    bad = write_described(tmp_path / "bad.safetensors", {"name": "nosuchnet", "kwargs": {}})
    with pytest.raises(pk.ModelFileError, match="unknown model 'nosuchnet'"):
        pk.load(bad)
    kw = write_described(tmp_path / "kw.safetensors", {"name": "lenet5", "kwargs": {"bogus": 1}})
    with pytest.raises(pk.ModelFileError, match="bogus"):
        pk.load(kw)
    assert json.loads(json.dumps(read_description(path)))["arch"]["name"] == "lenet5"


def test_model_json_beside_a_checkpoint_goes_through_the_same_resolver(tmp_path):
    from prunekit.train.checkpoint import FORMAT, atomic_torch_save
    from prunekit.workflow.models import load_model

    marker = tmp_path / "pwned"
    _, p, _ = pruned_lenet()
    ckpt = atomic_torch_save({"format": FORMAT, "model": p.state_dict()}, tmp_path / "last.pt")
    (tmp_path / "model.json").write_text(json.dumps({"factory": "os:system", "kwargs": {"command": f"touch {marker}"}}))
    with pytest.raises(pk.ModelFileError, match="model.json: model factory 'os:system' is not in an allow-listed"):
        load_model(ckpt)
    assert cli_main(["info", str(ckpt), "--runs", "0"]) == 2
    assert not marker.exists()
    (tmp_path / "model.json").write_text(json.dumps({"name": "lenet5", "kwargs": {"num_classes": 10, "in_channels": 1,
                                                                                  "width": 0.5}}))
    with pytest.raises(pk.ModelFileError, match="last.pt does not fit the architecture .*model.json names"):
        load_model(ckpt)  # the unpruned architecture: the pruned checkpoint's shapes differ


def test_bench_auto_base_is_read_through_the_verified_loaders(tmp_path):
    """`prunekit bench auto --base`: a sealed state dict loads; a plain torch.save file (no checksum) and a
    file changed after sealing are refused naming the file; a prunekit model file loads as pk.load reads it."""
    import argparse

    from prunekit.bench.auto import _base
    from prunekit.errors import ModelFileError
    from prunekit.models import create
    from prunekit.train.checkpoint import atomic_torch_save

    torch.manual_seed(0)
    net = create("lenet5", in_channels=1, num_classes=10)
    args = lambda path: argparse.Namespace(model="lenet5", base=str(path))  # noqa: E731
    atomic_torch_save(net.state_dict(), tmp_path / "sealed.pt")
    model, info = _base(args(tmp_path / "sealed.pt"), None, print)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), net.state_dict().values()))
    assert info["source"].endswith("sealed.pt")
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="plain.pt"):
        _base(args(tmp_path / "plain.pt"), None, print)
    data = bytearray((tmp_path / "sealed.pt").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "changed.pt").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="changed.pt"):
        _base(args(tmp_path / "changed.pt"), None, print)
    pk.save(net, tmp_path / "net.safetensors")
    model, _ = _base(args(tmp_path / "net.safetensors"), None, print)
    assert torch.equal(model(X), net.eval()(X))


def test_an_onnx_file_is_named_as_one_not_as_a_corrupt_model(tmp_path, capsys):
    """An intact ONNX file handed to pk.load / prunekit info was reported as a corrupt safetensors file."""
    _, model, _ = pruned_lenet()
    onnx_file = tmp_path / "m.onnx"
    pk.export(model, X[:1], onnx_file)
    renamed = tmp_path / "m.bin"
    renamed.write_bytes(onnx_file.read_bytes())
    for path in (onnx_file, renamed):
        with pytest.raises(ValueError, match=re.escape(f"{path} looks like an ONNX file, not a prunekit model file")):
            pk.load(path)
    assert cli_main(["info", str(onnx_file)]) == 2
    err = capsys.readouterr().err
    assert "looks like an ONNX file" in err and "corrupt" not in err
