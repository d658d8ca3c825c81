"""The registry of kinds: built-ins, and third-party kinds from the entry point group."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from probes.registry import BUILTIN, get_kind, kind_names
from tests.support import ROOT, probewatch_argv

THIRD_PARTY = '''
"""Always up: a third-party kind used by probewatch's tests."""
from dataclasses import dataclass

from probes.base import Kind, Result


@dataclass
class Options:
    greeting: str = "hello"


class AlwaysUp(Kind):
    """Always up; says its greeting."""

    Options = Options

    async def run(self, deadline):
        return Result.ok(0, self.options.greeting)


class NotAKind:
    """The shape of a kind, but not a probes.base.Kind."""

    Options = Options
'''


def test_every_builtin_kind_loads_and_has_options_and_a_docstring() -> None:
    assert set(BUILTIN) <= set(kind_names())
    for name in BUILTIN:
        cls = get_kind(name)
        assert cls.__doc__ and cls.Options, name


def test_a_kind_from_an_installed_distribution_is_listed_checked_and_run(tmp_path: Path) -> None:
    # An installed distribution is a module plus a .dist-info with entry_points.txt.
    (tmp_path / "alwaysup_kind.py").write_text(THIRD_PARTY)
    info = tmp_path / "alwaysup_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alwaysup-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[probewatch.probes]\nalwaysup = alwaysup_kind:AlwaysUp\n"
                                          "notakind = alwaysup_kind:NotAKind\n")
    config = tmp_path / "p.yml"
    config.write_text("probes:\n  - {name: x, kind: alwaysup, target: here, alwaysup: {greeting: hi}}\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(probewatch_argv(*args), capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=60)

    kinds = run("kinds")
    assert kinds.returncode == 0, kinds.stderr
    assert "\nalwaysup\n    Always up; says its greeting." in "\n" + kinds.stdout
    assert run("check", f"--config.file={config}").returncode == 0
    probe = run("probe", "x", f"--config.file={config}")
    assert probe.returncode == 0, probe.stderr
    assert "message: hi" in probe.stdout
    refused = tmp_path / "refused.yml"
    refused.write_text("probes:\n  - {name: y, kind: notakind, target: here}\n")
    checked = run("check", f"--config.file={refused}")
    assert checked.returncode != 0
    assert "not a probes.base.Kind subclass" in checked.stderr and "Traceback" not in checked.stderr
