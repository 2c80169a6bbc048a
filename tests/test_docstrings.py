"""The public entry points carry Google-style docstrings: a summary line, Args, Returns and an Example."""
from __future__ import annotations

import importlib
import inspect
import re

import pytest

ENTRY_POINTS = [
    "prunekit.trace", "prunekit.plan", "prunekit.apply", "prunekit.verify", "prunekit.count", "prunekit.export", "prunekit.save", "prunekit.load", "prunekit.register_patch",
    "prunekit.methods.run_method", "prunekit.methods.oneshot", "prunekit.methods.iterative", "prunekit.methods.srr",
    "prunekit.methods.coarse", "prunekit.methods.admm", "prunekit.methods.slimming", "prunekit.methods.group_lasso",
    "prunekit.methods.deep_compression.deep_compression", "prunekit.unstructured.prune_unstructured",
    "prunekit.criteria.get_criterion", "prunekit.policies.get_policy", "prunekit.planning.plan_from_scores",
    "prunekit.quantize.quantize_model", "prunekit.workflow.run_workflow",
]
SECTIONS = ("Args:", "Returns:", "Example:")


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _params(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("dotted", ENTRY_POINTS)
def test_entry_point_docstring(dotted):
    fn = _resolve(dotted)
    doc = inspect.getdoc(fn) or ""
    assert doc.splitlines() and doc.splitlines()[0].strip(), f"{dotted}: no summary line"
    positions = [doc.find(s) for s in SECTIONS]
    assert -1 not in positions, f"{dotted}: missing {[s for s, p in zip(SECTIONS, positions) if p < 0]}"
    assert positions == sorted(positions), f"{dotted}: sections out of order"
    example = doc[positions[2]:]
    assert ">>> " in example, f"{dotted}: the Example shows no call"
    args = doc[positions[0]:positions[1]]
    documented = set(re.findall(r"^\s{4}(\w+)(?:, (\w+))*(?: \(|:)", args, flags=re.M))
    names = {n for pair in documented for n in pair if n}
    names |= set(re.findall(r"^\s{4}\*\*(\w+):", args, flags=re.M))
    missing = [p for p in _params(fn) if p not in names and not re.search(rf"\b{p}\b", args)]
    assert missing == [], f"{dotted}: Args does not mention {missing}"
