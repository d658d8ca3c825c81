"""The registry of kinds: built-ins, third-party kinds from the entry point group, register()."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import ConfigError, parse_config
from probes.base import Kind, Result
from probes.registry import BUILTIN, KindUnavailable, get_kind, kind_names, register, registered, unregister
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


class _Greeter(Kind):
    """Says hello: a kind registered by a test."""

    @dataclass
    class Options:
        greeting: str = "hello"

    async def run(self, deadline: float) -> Result:
        return Result.ok(0, self.options.greeting)


GREETER_CONFIG = "probes:\n  - {name: g, kind: greeter, target: t, greeter: {greeting: hi}}\n"


def test_a_registered_kind_is_listed_checked_and_run_then_gone_when_unregistered() -> None:
    with registered("greeter", _Greeter):
        assert "greeter" in kind_names()
        spec = parse_config(GREETER_CONFIG, "t.yml").probes[0]
        assert spec.options.greeting == "hi"
        result = asyncio.run(get_kind("greeter")(spec).run(deadline=10.0))
        assert (result.up, result.message) == (True, "hi")
    assert "greeter" not in kind_names()
    with pytest.raises(ConfigError, match=r"t\.yml:2: .*unknown kind 'greeter'"):
        parse_config(GREETER_CONFIG, "t.yml")


def test_a_registered_import_path_loads_on_first_use_and_names_its_extra() -> None:
    register("greeter", "tests.probes.test_registry:_Greeter")
    try:
        assert get_kind("greeter") is _Greeter
    finally:
        unregister("greeter")
    with registered("missing", "no_such_module_here:Kind", extra="missing-extra"), \
            pytest.raises(KindUnavailable, match=r"pip install 'probewatch\[missing-extra\]'"):
        get_kind("missing")


def test_registering_over_a_builtin_shadows_it_until_unregistered() -> None:
    tcp = get_kind("tcp")
    with registered("tcp", _Greeter):
        assert get_kind("tcp") is _Greeter
    assert get_kind("tcp") is tcp


def test_a_class_that_is_no_kind_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match=r"kind 'plain': .*is not a probes\.base\.Kind subclass"):
        register("plain", dict)
    assert "plain" not in kind_names()


@pytest.mark.parametrize("path", ["no_colon", "a:b:c", ":Class", "module:"])
def test_a_bad_import_path_is_refused_at_registration(path: str) -> None:
    with pytest.raises(ValueError, match="is not an import path 'module:Class'"):
        register("bad", path)
    assert "bad" not in kind_names()
