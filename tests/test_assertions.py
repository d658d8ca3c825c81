"""Every test can fail: each test function asserts, or calls a helper of tests/ that does.

A helper counts when it holds an ``assert``, ``pytest.raises``/``pytest.fail``, or calls
another helper that does (found by name across tests/, transitively).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

FAILING_CALLS = {"raises", "fail", "warns", "missing", "wait_for", "require_binary"}


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _index(files: dict[str, str]) -> tuple[dict[str, list[ast.AST]], list[tuple[str, ast.AST]]]:
    """Functions by name, and the test functions (``where``, node), of ``{path: source}``."""
    by_name: dict[str, list[ast.AST]] = {}
    tests = []
    for path, source in files.items():
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                by_name.setdefault(node.name, []).append(node)
                if node.name.startswith("test_") and Path(path).name.startswith("test_"):
                    tests.append((f"{path}:{node.lineno} {node.name}", node))
    return by_name, tests


def silent_tests(files: dict[str, str]) -> tuple[int, list[str]]:
    """(how many tests, the ones that cannot fail)."""
    by_name, tests = _index(files)
    known: dict[int, bool] = {}

    def fails(node: ast.AST, seen: frozenset[int]) -> bool:
        if id(node) in known:
            return known[id(node)]
        if id(node) in seen:
            return False
        found = any(isinstance(n, ast.Assert) for n in ast.walk(node))
        if not found:
            called = _called_names(node)
            found = bool(called & FAILING_CALLS) or any(
                fails(helper, seen | {id(node)}) for name in called for helper in by_name.get(name, ()))
        known[id(node)] = found
        return found

    return len(tests), [where for where, node in tests if not fails(node, frozenset())]


def test_every_test_function_can_fail() -> None:
    files = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "tests").rglob("*.py"))}
    count, silent = silent_tests(files)
    assert count > 400, count  # the walk found the suite
    assert silent == [], "tests that cannot fail:\n" + "\n".join(silent)


def test_the_check_finds_a_test_without_assertion_and_follows_helpers() -> None:
    files = {
        "tests/helpers.py": "def check(x):\n    inner(x)\n\ndef inner(x):\n    assert x\n",
        "tests/test_fake.py": (
            "def test_silent():\n    print(1 + 1)\n\n"
            "def test_direct():\n    assert 1\n\n"
            "def test_helper():\n    check(1)\n\n"
            "def test_raises():\n    with pytest.raises(ValueError):\n        int('x')\n\n"
            "def test_recursive():\n    test_recursive()\n"),
    }
    assert silent_tests(files) == (5, ["tests/test_fake.py:1 test_silent",
                                       "tests/test_fake.py:14 test_recursive"])
