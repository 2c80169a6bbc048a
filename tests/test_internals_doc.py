"""docs/internals.md against the code: every prunekit name it mentions imports, its "Signatures" section is
what inspect.signature says, and every call it writes with a documented name uses real parameters.

Regenerate the section after changing a documented signature: ``python tests/test_internals_doc.py --write``.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "internals.md"
HEADER = "## Signatures"
INTRO = ("Generated from the code (`python tests/test_internals_doc.py --write`); `tests/test_internals_doc.py` "
         "fails when one drifts.\n")

# What the section lists, in order: the public verbs first, then each subpackage's entry points.
DOCUMENTED = [
    "prunekit.trace", "prunekit.plan", "prunekit.apply", "prunekit.verify", "prunekit.count", "prunekit.save",
    "prunekit.load", "prunekit.export", "prunekit.register_patch", "prunekit.Target",
    "prunekit.graph.Member", "prunekit.graph.ChannelGroup", "prunekit.graph.ChannelGroup.producers",
    "prunekit.graph.ChannelGroup.member", "prunekit.graph.DependencyGraph.group",
    "prunekit.graph.DependencyGraph.prunable_groups", "prunekit.graph.DependencyGraph.after",
    "prunekit.graph.plan.PruningPlan.from_kept", "prunekit.graph.plan.PruningPlan.removals",
    "prunekit.graph.plan.PruningPlan.to_json", "prunekit.graph.plan.PruningPlan.from_json",
    "prunekit.criteria.get_criterion", "prunekit.criteria.criterion_options", "prunekit.policies.get_policy",
    "prunekit.policies.Allocation", "prunekit.planning.plan_from_scores", "prunekit.methods.run_method",
    "prunekit.methods.register_method", "prunekit.methods.common.begin",
    "prunekit.methods.common.prune_once_and_recover", "prunekit.surgery.masks.apply_masks",
    "prunekit.surgery.masks.get_masks", "prunekit.surgery.masks.remove_masks", "prunekit.surgery.masks.sparsity",
    "prunekit.surgery.masks.nm_mask", "prunekit.surgery.masks.prune_nm", "prunekit.unstructured.weight_scores",
    "prunekit.unstructured.masks_from_scores", "prunekit.unstructured.prune_unstructured",
    "prunekit.unstructured.AGPPruner", "prunekit.compress.share_weights", "prunekit.compress.save_compressed",
    "prunekit.compress.load_compressed", "prunekit.compress.read_compressed",
    "prunekit.transformers.hf.register_patches", "prunekit.transformers.hf.after_apply",
    "prunekit.transformers.hf.update_config", "prunekit.transformers.hf.config_status",
    "prunekit.transformers.hf.build", "prunekit.transformers.methods.run_calibration_method",
    "prunekit.workflow.run_workflow", "prunekit.workflow.run_hf_workflow", "prunekit.workflow.HFWorkflowConfig",
    "prunekit.workflow.TextConfig", "prunekit.workflow.RunData.given", "prunekit.workflow.workflow_methods",
    "prunekit.workflow.compression.check_config", "prunekit.workflow.compression.dc_config",
    "prunekit.workflow.compression.compress",
]


def resolve(dotted: str):
    """The object a dotted name denotes, attribute first (``prunekit.graph.trace`` is the function), else
    the submodule of that name."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=1):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
        elif inspect.ismodule(obj):
            obj = importlib.import_module(".".join(parts[: i + 1]))
        else:
            raise AttributeError(f"{'.'.join(parts[:i])} has no attribute {attr!r}")
    return obj


def render(obj) -> str:
    """The parameter list of ``obj`` without annotations: ``(model, plan=None, *, strict=True, **kw)``."""
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    return str(sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty) for p in params],
                           return_annotation=inspect.Signature.empty))


def section() -> str:
    lines = [HEADER, INTRO, "```"]
    lines += [f"{name}{render(resolve(name))}" for name in DOCUMENTED]
    return "\n".join(lines + ["```", ""])


def _split_doc(text: str) -> tuple[str, str]:
    """(the doc before the Signatures section, the section) — the section is the file's last."""
    at = text.find("\n" + HEADER + "\n")
    return (text, "") if at < 0 else (text[: at + 1], text[at + 1:])


def _code_spans(text: str) -> list[str]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", rest)


def _short_names() -> dict[str, str]:
    """Last component -> dotted name, for the documented names whose last component is unambiguous."""
    seen: dict[str, list[str]] = {}
    for name in DOCUMENTED:
        seen.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    return {k: v[0] for k, v in seen.items() if len(v) == 1}


def _calls(span: str):
    """(name, argument list) for each ``name(args)`` in ``span`` with no parentheses inside the arguments."""
    for m in re.finditer(r"(?<![\w.])((?:pk|prunekit)(?:\.\w+)+|\w+)\(([^()]*)\)", span):
        yield m.group(1), [a.strip() for a in m.group(2).split(",") if a.strip()]


def _check_call(dotted: str, args: list[str]) -> list[str]:
    params = inspect.signature(resolve(dotted)).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    problems = []
    for a in args:
        if a in ("...", "*") or a.startswith("*") or "=" not in a:
            continue
        key, value = (s.strip() for s in a.split("=", 1))
        if key not in params:
            if not var_kw:
                problems.append(f"{dotted}: no parameter {key!r}")
            continue
        default = params[key].default
        try:
            documented = ast.literal_eval(value)
        except (ValueError, SyntaxError):  # "...", a list of choices ("global"|"layer"), a placeholder
            continue
        if documented is not Ellipsis and default is not inspect.Parameter.empty and documented != default:
            problems.append(f"{dotted}: {key} defaults to {default!r}, the doc says {value}")
    return problems


def test_every_prunekit_name_in_the_doc_imports():
    text = DOC.read_text()
    names = set(re.findall(r"(?<![\w.])prunekit(?:\.\w+)+", text))
    names |= {"prunekit" + n[2:] for n in re.findall(r"(?<![\w.])pk(?:\.[A-Za-z]\w*)+", text)}
    missing = []
    for n in sorted(names):
        try:
            resolve(n)
        except (ImportError, AttributeError) as e:
            missing.append(f"{n} ({e})")
    assert missing == []
    assert len(names) > 20  # the walk sees the doc's names


def test_signatures_section_matches_the_code():
    _, current = _split_doc(DOC.read_text())
    assert current == section(), "docs/internals.md: run `python tests/test_internals_doc.py --write`"


def test_calls_in_the_doc_use_real_parameters():
    body, _ = _split_doc(DOC.read_text())
    short = _short_names()
    problems, checked = [], 0
    for span in _code_spans(body):
        for name, args in _calls(span):
            dotted = ("prunekit" + name[2:]) if name.startswith("pk.") else short.get(name, name)
            if not dotted.startswith("prunekit."):
                continue
            checked += 1
            problems += _check_call(dotted, args)
    assert problems == []
    assert checked >= 10


def test_call_checker_reports_wrong_parameters():
    assert _check_call("prunekit.trace", ["model", "example_inputs", "round_to=1"]) == []
    assert _check_call("prunekit.trace", ["model", "bogus=1"]) == ["prunekit.trace: no parameter 'bogus'"]
    assert _check_call("prunekit.trace", ["model", "round_to=2"]) == [
        "prunekit.trace: round_to defaults to 1, the doc says 2"]
    assert _check_call("prunekit.unstructured.prune_unstructured", ['scope="global"', 'criterion="a"|"b"']) == []
    assert list(_calls("x = pk.plan(model, ratio=0.3) / f(a)")) == [("pk.plan", ["model", "ratio=0.3"]),
                                                                    ("f", ["a"])]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    head, _ = _split_doc(DOC.read_text())
    DOC.write_text(head.rstrip("\n") + "\n\n" + section())
