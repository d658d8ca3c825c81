"""The import graph of exporter/ and probes/: probes/ never imports exporter/, and no circles.

Read with ``ast`` from the source files, nothing imported.  Every import statement counts,
wherever it is (module level, a class, a function's body: a lazy import inside a function
still ties the two modules together), except, for circles only, those in an
``if TYPE_CHECKING:`` block, which never run.  For the upward rule those count too.  An
import of ``pkg.mod`` also imports ``pkg``; that edge is dropped when ``pkg`` is the
importer's own package or an ancestor of it (Python has already begun importing those).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exporter", "probes")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt], typing: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements in ``body``, at any depth; ``if TYPE_CHECKING:`` ones only with ``typing``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.orelse, typing)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            stmts.extend(handler.body)
                    yield from _imports(stmts, typing)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules of exporter/ and probes/ that ``node`` in ``module`` imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if _is_package(module) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [base]
        names += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            yield name


def _graph(typing: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(module, set())
        for node in _imports(tree.body, typing):
            for target in _targets(module, node):
                if target != module and not module.startswith(target + "."):
                    edges.add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle(graph, set(component)) for component in components]


def _circle(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A path start → ... → start inside one strongly connected component, for the message."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for succ in sorted(graph[node] & members):
            if succ == start:
                return [*paths[node], start]
            if succ not in paths:
                paths[succ] = [*paths[node], succ]
                queue.append(succ)
    return sorted(members)  # unreachable for a real component


def test_the_walk_sees_both_packages_and_their_imports() -> None:
    graph = _graph(typing=False)
    assert "exporter.cli" in graph and "probes.tcp" in graph
    # A known edge in each direction the walk must resolve: relative and absolute.
    assert "exporter.config" in graph["exporter.cli"]  # from .config import ...
    assert "probes.registry" in graph["exporter.config"]  # from probes.registry import ...
    assert "probes.base" in graph["probes.tcp"]  # from .base import ...


def test_probes_never_import_the_exporter() -> None:
    upward = sorted(f"{module} imports {target}"
                    for module, targets in _graph(typing=True).items() if module.split(".")[0] == "probes"
                    for target in targets if target.split(".")[0] == "exporter")
    assert not upward, "probes/ must not import exporter/: " + "; ".join(upward)


def test_no_import_circles() -> None:
    circles = _cycles(_graph(typing=False))
    assert not circles, "import circles: " + "; ".join(" -> ".join(circle) for circle in circles)


def test_a_circle_is_found_and_named() -> None:
    circles = _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert circles == [["a", "b", "c", "a"]]
