"""The three model sets of the engine benchmark: every torchvision classifier, one model per timm family
(tests/graph/timm_families.json, the same rows the tests run) and the tiny Hugging Face zoo
(prunekit.transformers.hf_zoo). Each returns the model (seed 0, eval mode) and its example inputs."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"torchvision": ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5"],
         "timm": ["test_resnet", "test_vit", "test_efficientnet", "test_nfnet"],
         "hf": ["bert", "gpt2"]}
FIXED_SIZE = {"inception_v3": 75, "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224,
              "vit_h_14": 224, "maxvit_t": 224}


def _timm_zoo():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.graph import timm_zoo

    return timm_zoo


def names(zoo: str) -> list[str]:
    """Every model of `zoo` in benchmark order."""
    if zoo == "torchvision":
        return sorted(torchvision.models.list_models(module=torchvision.models))
    if zoo == "timm":
        z = _timm_zoo()
        return [r["model"] for r in z.FAMILIES + z.EXTRAS]
    if zoo == "hf":
        from prunekit.transformers.hf_zoo import tiny_zoo

        return [c.name for c in tiny_zoo()]
    raise ValueError(f"unknown zoo {zoo!r}; choose torchvision, timm or hf")


def _torchvision(name: str, size: int | None) -> tuple[torch.nn.Module, torch.Tensor]:
    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, num_classes=10, **kw).eval()
    if size is not None:
        return model, torch.randn(1, 3, size, size)
    for s in ([FIXED_SIZE[name]] if name in FIXED_SIZE else [32, 64, 96, 128, 224]):
        x = torch.randn(1, 3, s, s)
        try:
            with torch.no_grad():
                model(x)
            return model, x
        except RuntimeError:
            continue
    raise RuntimeError(f"{name}: no input size of 32..224 accepted")


def build(zoo: str, name: str, size: int | None = None) -> tuple[torch.nn.Module, Any, bool]:
    """(model, example inputs, whether to run make_input_sensitive) for one model of `zoo`; seed 0."""
    torch.manual_seed(0)
    if zoo == "torchvision":
        return (*_torchvision(name, size), True)
    if zoo == "timm":
        z = _timm_zoo()
        row = dict(next(r for r in z.FAMILIES + z.EXTRAS if r["model"] == name))
        return (*z.build(row), True)
    if zoo == "hf":
        from prunekit.transformers.hf_zoo import zoo_case

        case = zoo_case(name)
        return case.build(), case.inputs(), False
    raise ValueError(f"unknown zoo {zoo!r}; choose torchvision, timm or hf")


def zeroed_outputs(model: torch.nn.Module, plan, inputs):
    """The original with plan.removals() zeroed, run on inputs (independent of pk.verify)."""
    return _timm_zoo().zeroed_outputs(model, plan, inputs)
