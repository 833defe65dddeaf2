"""The package's import graph: no cycles anywhere (the layers contract in pyproject.toml, checked
by ``lint-imports``, only sees imports between layers), and deeplinear's own imports at the top
of every module but those that defer them on purpose (the ``cli`` package's, for its argument
checks, and the lazy ``import deeplinear``)."""

import ast
from pathlib import Path

import grimp

import deeplinear

PACKAGE = Path(deeplinear.__file__).parent
DEFERRING = {*(PACKAGE / "cli").glob("*.py"), PACKAGE / "__init__.py"}


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


MAX_FILE_LINES, MAX_FUNCTION_LINES = 600, 80
# Over the limits, being split elsewhere: this list only shrinks (an entry within the limits
# fails the test below: remove it). Files by their path in the package, functions by module and
# qualified name.
OVER_THE_LIMITS: set[str] = set()  # none left


def over_the_limits(root: Path = PACKAGE) -> set[str]:
    """Modules over ``MAX_FILE_LINES`` lines and functions (methods and nested functions too)
    over ``MAX_FUNCTION_LINES`` (from ``def`` to their last line) under ``root``."""
    found = set()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(root).as_posix()
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.add(name)
        module = name.removesuffix(".py").replace("/", ".")

        def visit(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    qualified = f"{prefix}.{child.name}"
                    lines = child.end_lineno - child.lineno + 1
                    if not isinstance(child, ast.ClassDef) and lines > MAX_FUNCTION_LINES:
                        found.add(qualified)
                    visit(child, qualified)
                else:
                    visit(child, prefix)

        visit(ast.parse(text), module)
    return found


def test_no_file_over_600_lines_and_no_function_over_80():
    found = over_the_limits()
    assert sorted(found - OVER_THE_LIMITS) == [], "split these"
    assert sorted(OVER_THE_LIMITS - found) == [], "within the limits now: remove from the list"


def test_over_the_limits_finds_long_files_and_functions(tmp_path):
    def function(name: str, lines: int, indent: str = "") -> str:
        body = "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))
        return f"{indent}def {name}():\n{body}"

    limit = MAX_FUNCTION_LINES
    methods = function("fits", limit, "    ") + function("long", limit + 1, "    ")
    (tmp_path / "code.py").write_text(function("fits", limit) + "\n\nclass A:\n" + methods)
    (tmp_path / "fits.py").write_text("x = 1\n" * MAX_FILE_LINES)
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    assert over_the_limits(tmp_path) == {"code.A.long", "long.py"}
