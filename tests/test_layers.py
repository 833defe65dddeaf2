"""The package's import graph: no cycles anywhere (the layers contract in pyproject.toml, checked
by ``lint-imports``, only sees imports between layers), and deeplinear's own imports at the top
of every module but the two that defer them on purpose (the CLI's argument checks and the lazy
``import deeplinear``)."""

import ast
from pathlib import Path

import grimp

import deeplinear

PACKAGE = Path(deeplinear.__file__).parent
DEFERRING = {PACKAGE / "cli.py", PACKAGE / "__init__.py"}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (each an import cycle)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_strongly_connected_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    graph = grimp.build_graph("deeplinear", exclude_type_checking_imports=True)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert strongly_connected(edges) == []


def deferred_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    """``module:line`` of every deeplinear import inside a function or class body."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for inner in ast.walk(node):
            names = []
            if isinstance(inner, ast.ImportFrom):
                names = [inner.module or ""] if inner.level == 0 else ["."]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            if any(name == "." or name.startswith("deeplinear") for name in names):
                found.append(f"{path.relative_to(root)}:{inner.lineno}")
    return found


def test_deeplinear_imports_are_at_the_top_of_modules():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in DEFERRING:
            found += deferred_imports(path)
    assert found == []


def test_deferred_imports_are_found(tmp_path):
    path = tmp_path / "late.py"
    path.write_text("import numpy\n\n\ndef f():\n    from deeplinear.errors import UsageError\n")
    assert deferred_imports(path, tmp_path) == ["late.py:5"]
