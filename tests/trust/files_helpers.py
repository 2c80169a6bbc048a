"""Small saved models and hand-made (hostile) files for the file-trust tests."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import prunekit as pk
from prunekit import io as pk_io
from prunekit.models import create

X = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def pruned_lenet() -> tuple[torch.nn.Module, torch.nn.Module, pk.PruningPlan]:
    """(original, pruned copy, plan) of a small LeNet-5."""
    torch.manual_seed(0)
    m = create("lenet5", num_classes=10, in_channels=1, width=0.5).eval()
    plan = pk.plan(m, X, ratio=0.3)
    return m, pk.apply(copy.deepcopy(m), plan), plan


def write_described(path: Path, arch: dict, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A safetensors file whose description names `arch`, with a valid checksum: what an attacker who knows
    the format can write."""
    tensors = tensors or {"w": torch.zeros(1)}
    desc = json.dumps({"format": pk_io.FORMAT, "version": pk_io.FORMAT_VERSION, "arch": arch, "plans": [],
                       "extra": {}})
    save_file(tensors, str(path), metadata={pk_io.DESC_KEY: desc, pk_io.CHECKSUM_KEY: pk_io._digest(desc, tensors)})
    return path
