"""Every torchvision classification model traces, prunes 30% uniform, runs, shrinks and verifies; an "exact"
claim is also checked by zeroing plan.removals() in the original here, independently of pk.verify.

All of them run in `make test` (about 4 minutes on 2 CPU cores at the smallest inputs) except the four
largest (over 300M parameters), which carry the `heavy` marker: `make test-heavy`, and CI after `make test`.
"""
import copy

import pytest
import torch
import torchvision

import prunekit as pk
from prunekit.surgery.verify import make_input_sensitive

from .timm_zoo import zeroed_outputs

ALL = sorted(torchvision.models.list_models(module=torchvision.models))
HEAVY = {"regnet_y_128gf", "vit_h_14", "vit_l_16", "vit_l_32"}
SIZES = {"inception_v3": 75, "googlenet": 32, "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224,
         "vit_h_14": 224, "maxvit_t": 224}
PARAMS = [pytest.param(n, marks=pytest.mark.heavy if n in HEAVY else ()) for n in ALL]


@pytest.mark.parametrize("name", PARAMS)
def test_torchvision_model(name):
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, num_classes=10, **kw).eval()
    for s in ([SIZES[name]] if name in SIZES else [32, 64, 96, 128, 224]):  # the smallest input it accepts
        x = torch.randn(1, 3, s, s)
        try:
            with torch.no_grad():
                ref = model(x)
            break
        except RuntimeError:
            continue
    make_input_sensitive(model, x)  # else many fresh models output their bias for any input: nothing to verify
    with torch.no_grad():
        ref = model(x)
    plan = pk.plan(model, x, ratio=0.3)
    assert not plan.is_empty(), name
    pruned = pk.apply(copy.deepcopy(model), plan)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == ref.shape
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < 0.95 * before
    report = pk.verify(model, pruned, plan, x)
    assert not report.weak, f"{name}: {report}"
    if plan.exact:  # and the original with plan.removals() zeroed here (not by pk.verify) computes the same
        zeroed = zeroed_outputs(model, plan, x)
        rel = float((zeroed - out).abs().max() / zeroed.abs().max().clamp_min(1e-12))
        assert report.exact and rel < 1e-4, f"{name} claims exact, zeroing check differs by {rel:.3g}: {report}"
    else:
        assert plan.reasons()
