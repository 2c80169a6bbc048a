"""Build the timm family sample (timm_families.json) at the smallest input each model accepts, and check a
plan independently of `pk.verify`: zero every slice of plan.removals() in the original and compare.

Used by tests/graph/test_timm.py, tests/graph/timm_families.py (which times `check` per model to choose the
`heavy` ones) and benchmarks/engine.py."""
from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

_DATA = json.loads(Path(__file__).with_name("timm_families.json").read_text())
FAMILIES: list[dict] = _DATA["families"]
EXTRAS: list[dict] = _DATA.get("extras", [])
SIZES = (32, 64, 96, 128, 160, 192, 224, 256)


def _create(name: str, **kw) -> nn.Module:
    import timm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(name, pretrained=False, num_classes=10, **kw).eval()


def _runs(model: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            model(x)
        return True
    except Exception:  # noqa: BLE001 - too small for this model: try the next size
        return False


@torch.no_grad()
def _open_layer_scales(model: nn.Module) -> nn.Module:
    """Set LayerScale-style gains (1-D parameters holding one tiny constant, 1e-5 in CaiT) to 1: at init they
    shut every residual branch, so the output hardly depends on the input and verify would compare nothing."""
    for p in model.parameters():
        if p.dim() == 1 and p.numel() > 1 and 0 < float(p.abs().max()) < 1e-3 and bool((p == p[0]).all()):
            p.fill_(1.0)
    return model


def build(row: dict) -> tuple[nn.Module, torch.Tensor]:
    """The family's model (seed 0, 10 classes) and an input of the size recorded for it (or the smallest
    that runs: `img_size` is passed to models that take it, else the model's own size and larger ones)."""
    model, x = _build(row)
    return _open_layer_scales(model), x


def _build(row: dict) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    chans = row["input_size"][0]
    if row.get("input"):
        model = _create(row["model"], **row.get("kwargs", {}))
        return model, torch.randn(1, chans, *row["input"])
    native = row["input_size"][1]
    for s in [s for s in SIZES if s < native] + [native]:
        try:
            model = _create(row["model"], img_size=s)
        except TypeError:
            break  # no img_size argument: try input sizes on the default model
        except Exception:  # noqa: BLE001 - this size is rejected by the constructor
            continue
        x = torch.randn(1, chans, s, s)
        if _runs(model, x):
            row.update(kwargs={"img_size": s}, input=[s, s])
            return model, x
    model = _create(row["model"])
    for s in SIZES:
        x = torch.randn(1, chans, s, s)
        if s >= 32 and _runs(model, x):
            row.update(kwargs={}, input=[s, s])
            return model, x
    x = torch.randn(1, chans, native, native)
    row.update(kwargs={}, input=[native, native])
    return model, x


@torch.no_grad()
def zeroed_outputs(model: nn.Module, plan, x):
    """The original model's output with every removed slice set to zero (written here, not taken from
    prunekit.surgery.verify, so the test checks the plan's "exact" claim independently). x: a tensor, a
    tuple of positional inputs or a dict of keyword inputs."""
    z = copy.deepcopy(model)
    state = z.state_dict(keep_vars=True)  # every name of a tied tensor
    for key, dim, idx in plan.removals():
        t = state[key]
        mask = torch.ones(t.shape[dim], dtype=t.dtype)
        mask[torch.tensor(idx)] = 0
        shape = [1] * t.dim()
        shape[dim] = -1
        t.mul_(mask.reshape(shape))
    z.eval()
    return z(**x) if isinstance(x, dict) else z(*x) if isinstance(x, (tuple, list)) else z(x)


def extra_row(name: str) -> dict:
    """A row like the family sample's for a model outside it (its family, default input size)."""
    import timm
    from timm.models import _registry

    cfg = timm.get_pretrained_cfg(name)
    size = list(cfg.input_size) if cfg is not None and cfg.input_size else [3, 224, 224]
    return {"family": _registry._model_to_module[name], "model": name, "input_size": size}


def check(row: dict, ratio: float = 0.3) -> dict:
    """Build, plan `ratio` uniform L1, apply, run and verify one model; the numbers the test asserts on."""
    import prunekit as pk
    from prunekit.surgery.verify import make_input_sensitive

    t0 = time.perf_counter()
    model, x = build(row)
    make_input_sensitive(model, x)  # else many fresh models output their bias for any input: nothing to verify
    with torch.no_grad():
        ref = model(x)
    t1 = time.perf_counter()
    plan = pk.plan(model, x, ratio=ratio)
    pruned = pk.apply(copy.deepcopy(model), plan)
    t2 = time.perf_counter()
    with torch.no_grad():
        out = pruned(x)
        zeroed = zeroed_outputs(model, plan, x)
    report = pk.verify(model, pruned, plan, x)
    n = sum(p.numel() for p in model.parameters())
    return {"model": row["model"], "input": list(x.shape), "empty": plan.is_empty(),
            "shape_ok": out.shape == ref.shape, "params_kept": sum(p.numel() for p in pruned.parameters()) / n,
            "exact_claim": plan.exact, "reasons": plan.reasons(), "verify_exact": report.exact,
            "verify_weak": report.weak, "zeroing_rel_diff": float((zeroed - out).abs().max()
                                                                  / zeroed.abs().max().clamp_min(1e-12)),
            "plan_apply_s": t2 - t1, "seconds": time.perf_counter() - t0}
