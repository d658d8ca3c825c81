"""Built-in agent operations: one module per operation, named as requests name it.

A module here is an operation when it has a docstring (shown by
``probewatch agent --list-operations``) and a function
``collect(args: list[str]) -> dict[str, float]`` returning named numbers; those
names become ``field`` labels on ``probewatch_probe_value`` at the prober.  An
optional ``ARGUMENTS`` string describes the arguments it takes (empty: none).
Third-party operations register through the ``probewatch.agent_operations``
entry point group (``name = "package.module"``).

This package also finds them (``discover``): the modules here plus plugins.
The set is fixed when the agent starts; a request can only pick names from it,
so no request ever reaches an import, a file name or a command of its choosing.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType

ENTRY_POINT_GROUP = "probewatch.agent_operations"
log = logging.getLogger("probewatch.agent")


@dataclass(frozen=True)
class Operation:
    name: str
    doc: str
    arguments: str  # "" when it takes none
    collect: Callable[[list[str]], dict[str, float]]

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


def operation_from_module(name: str, module: ModuleType) -> Operation | None:
    """The operation a module defines, or None (with a warning) if it is not one."""
    doc = inspect.getdoc(module) or ""
    collect = getattr(module, "collect", None)
    if not callable(collect):
        log.warning("skipping operation module without collect()",
                    extra={"operation": name})
        return None
    if not doc:
        log.warning("skipping operation module without a docstring",
                    extra={"operation": name})
        return None
    arguments = getattr(module, "ARGUMENTS", "")
    return Operation(name, doc, arguments if isinstance(arguments, str) else "", collect)


def _builtin_modules() -> Iterable[tuple[str, str]]:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            yield info.name, f"{__name__}.{info.name}"


def discover() -> dict[str, Operation]:
    """Every operation this agent offers, by name (built-ins win over plugins)."""
    found: dict[str, Operation] = {}
    sources = list(_builtin_modules())
    sources += [(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for name, module_path in sources:
        if name in found:
            continue
        try:
            module = importlib.import_module(module_path)
        except Exception as exc:  # a broken plugin must not stop the agent
            log.warning("skipping operation that cannot load",
                        extra={"operation": name, "error": str(exc)})
            continue
        op = operation_from_module(name, module)
        if op is not None:
            found[name] = op
    return dict(sorted(found.items()))


def listing(ops: dict[str, Operation]) -> str:
    """The text of ``probewatch agent --list-operations``."""
    lines = []
    for op in ops.values():
        head = op.name + (f" {op.arguments}" if op.arguments else "")
        lines.append(head)
        lines.extend(("    " + line).rstrip() for line in op.doc.strip().splitlines())
    return "\n".join(lines) + "\n"
