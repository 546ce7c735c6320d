"""Checks that guard lightray's architecture: encapsulation, no import cycles at load, module sizes.

Each check lists every offender (file:line and what), so one run shows all that is left to fix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "lightray"

# (file relative to the repository root, expression text such as "bound._rows" or a bare name) -> why it stays.
# Only where Python leaves no choice; an entry that no longer matches anything fails the test.
ALLOW_LIST: dict[tuple[str, str], str] = {
    ("lightray/metrics.py", "value._forward_cache"): (
        "torchmetrics' own attribute: the value of the last update, which it has no public API for"
    ),
    **{
        ("lightray/data/ray_dataset.py", f"bound.{name}"): "RayDataLoader.bind: `bound` is a copy of `self`"
        for name in ("_strategy", "_shard", "_rows", "_count_rows")
    },
    ("lightray/utilities/apply_func.py", "data._fields"): (
        "a namedtuple's documented API (the underscore only keeps it clear of field names): how to recognise one"
    ),
}

ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr"}
MAX_LINES, MAX_TRAINER_LINES = 450, 400


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_own(node: ast.expr) -> bool:
    """`self`, `cls` or `super()`: an object reading its own private attributes."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def private_accesses(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """(line, expression text, private name) for each read of another object's or module's private name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and not is_own(node.value):
            yield node.lineno, f"{ast.unparse(node.value)}.{node.attr}", node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
            and not is_own(node.args[0])
        ):
            yield node.lineno, f"{ast.unparse(node.args[0])}.{node.args[1].value}", node.args[1].value
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if is_private(alias.name):
                    yield node.lineno, f"from {module} import {alias.name}", alias.name


def package_files(root: Path, package: str) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def test_no_module_reads_another_objects_private_attributes() -> None:
    offenders, used = [], set()
    for path in package_files(ROOT, PACKAGE):
        rel = path.relative_to(ROOT).as_posix()
        for line, text, name in sorted(private_accesses(ast.parse(path.read_text(), str(path)))):
            keys = {(rel, text), (rel, name)} & ALLOW_LIST.keys()
            used |= keys
            if not keys:
                offenders.append(f"{rel}:{line}: {text}")
    stale = [f"{file}: {text!r} ({reason})" for (file, text), reason in ALLOW_LIST.items() if (file, text) not in used]
    message = ""
    if offenders:
        message += f"{len(offenders)} reads of another object's private names:\n  " + "\n  ".join(offenders) + "\n"
    if stale:
        message += "ALLOW_LIST entries that match nothing any more:\n  " + "\n  ".join(stale)
    assert not message, message


def test_private_access_check_sees_each_form() -> None:
    source = """
from m import _hidden, shown
self._a, cls._b, super()._c, obj.__len__, obj.public
other._d
getattr(self, "_e"), getattr(other, "_f"), setattr(x.y, "_g", 1), hasattr(other, "public")
"""
    found = [(line, text) for line, text, _ in sorted(private_accesses(ast.parse(source)))]
    assert found == [(2, "from m import _hidden"), (4, "other._d"), (5, "other._f"), (5, "x.y._g")]


# --- import cycles at module load ------------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it loads: not those in functions, nor under `if TYPE_CHECKING:`."""
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(stmt, ast.If):
            if not is_type_checking(stmt.test):
                yield from load_time_imports(stmt.body)
            yield from load_time_imports(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                yield from load_time_imports(block)
        elif isinstance(stmt, (ast.ClassDef, ast.With, ast.For, ast.While)):  # their bodies run at load too
            yield from load_time_imports(stmt.body)
            yield from load_time_imports(getattr(stmt, "orelse", []))


def import_graph(root: Path, package: str) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module of the package -> ["file:line: import text", ...]}, at module load.

    Importing `p.a.b` also runs `p/__init__` and `p/a/__init__`: those count as edges too, except packages the
    importing module lies in (they are already being initialised when it loads).
    """
    paths = {module_name(path, root): path for path in package_files(root, package)}
    packages = {name for name, path in paths.items() if path.name == "__init__.py"}
    graph: dict[str, dict[str, list[str]]] = {name: {} for name in paths}
    for name, path in paths.items():
        own_package = name if name in packages else name.rpartition(".")[0]
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for stmt in load_time_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            else:
                base = stmt.module or ""
                if stmt.level:
                    parent = ".".join(own_package.split(".")[: len(own_package.split(".")) - stmt.level + 1])
                    base = f"{parent}.{base}" if base else parent
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in stmt.names]
            evidence = f"{path.relative_to(root).as_posix()}:{stmt.lineno}: {ast.unparse(stmt)}"
            for target in targets:
                parts = target.split(".")
                implied = {".".join(parts[:i]) for i in range(1, len(parts))} - ancestors
                for module in {target} | implied:
                    if module in paths and evidence not in graph[name].setdefault(module, []):
                        graph[name][module].append(evidence)
    return {name: {m: ev for m, ev in edges.items() if ev} for name, edges in graph.items()}


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe_cycles(graph: dict[str, dict[str, list[str]]]) -> str:
    lines = []
    for component in cycles(graph):
        lines.append("cycle among " + ", ".join(component) + ":")
        lines += [f"  {e}  -> {m}" for n in component for m in sorted(graph[n]) if m in component for e in graph[n][m]]
    return "\n".join(lines)


def test_no_import_cycle_at_module_load() -> None:
    message = describe_cycles(import_graph(ROOT, PACKAGE))
    assert not message, message


def test_import_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    """The check itself: a cycle through a package's __init__ is found; TYPE_CHECKING and function imports are not."""
    files = {
        "p/__init__.py": "from p.a import A\n",
        "p/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\nA = 1\n",
        "p/b.py": "def f():\n    from p.a import A\n",
        "p/sub/__init__.py": "",
        "p/sub/c.py": "from . import d\n",
        "p/sub/d.py": "try:\n    from ..sub.c import x\nexcept ImportError:\n    pass\n",
        "p/e.py": "import p.sub.d\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "p")
    assert graph["p.a"] == {} and graph["p.b"] == {}
    assert set(graph["p.e"]) == {"p.sub", "p.sub.d"}  # p.sub's __init__ runs too; p is e's own package
    assert cycles(graph) == [["p.sub.c", "p.sub.d"]]
    assert "p/sub/d.py:2: from ..sub.c import x  -> p.sub.c" in describe_cycles(graph)
    (tmp_path / "p/a.py").write_text("import p.e\n")
    (tmp_path / "p/sub/__init__.py").write_text("from p import a\n")  # p.sub -> p.a -> p.e -> p.sub (its __init__)
    assert ["p.a", "p.e", "p.sub"] in cycles(import_graph(tmp_path, "p"))


# --- module sizes -----------------------------------------------------------------------------------------------


def test_module_sizes() -> None:
    trainer = next(p for p in (ROOT / "lightray/trainer/trainer.py", ROOT / "lightray/trainer.py") if p.exists())
    offenders = []
    for path in package_files(ROOT, PACKAGE):
        count = len(path.read_text().splitlines())
        limit = MAX_TRAINER_LINES - 1 if path == trainer else MAX_LINES
        if count > limit:
            offenders.append(f"{path.relative_to(ROOT).as_posix()}: {count} lines (at most {limit})")
    assert not offenders, "modules too long:\n  " + "\n  ".join(offenders)
