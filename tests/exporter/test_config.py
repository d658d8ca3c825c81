"""Config loading: every bad input is reported at once, with FILE:LINE and place."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config, parse_config
from exporter.durations import format_duration, parse_duration
from tests.support import ROOT, probewatch_argv

FIXTURES = ROOT / "tests" / "fixtures"
INVALID = sorted(FIXTURES.glob("invalid-*.yml"))


def expected_messages(path: Path) -> list[str]:
    lines = [line[len("# expect: "):] for line in path.read_text().splitlines()
             if line.startswith("# expect: ")]
    return [line.replace("{file}", str(path)) for line in lines]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_gives_its_exact_messages(path: Path) -> None:
    expected = expected_messages(path)
    assert expected, f"{path.name} needs '# expect: ' lines naming its messages"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == expected


def test_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{path}: cannot be read: No such file or directory"]  # no line 0


def test_check_command_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    import subprocess

    path = FIXTURES / "invalid-several.yml"
    proc = subprocess.run(probewatch_argv("check", f"--config.file={path}"),
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[:-1] == expected_messages(path)
    assert proc.stderr.splitlines()[-1] == "4 problem(s) found"


def test_defaults_apply_and_probe_values_override() -> None:
    config = parse_config(
        """
defaults: {period: 1m, timeout: 5s, failures: 5, labels: {group: web, severity: critical}}
probes:
  - {name: a, kind: tcp, target: "127.0.0.1:80"}
  - {name: b, kind: tcp, target: "[::1]:80", period: 1h30m, timeout: 500ms, failures: 1,
     active: false, labels: {severity: warning}}
""", "inline.yml")
    a, b = config.probes
    assert (a.period, a.timeout, a.failures, a.active) == (60.0, 5.0, 5, True)
    assert dict(a.labels) == {"group": "web", "severity": "critical"}
    assert (b.period, b.timeout, b.failures, b.active) == (5400.0, 0.5, 1, False)
    assert dict(b.labels) == {"group": "web", "severity": "warning"}


def test_builtin_defaults() -> None:
    (probe,) = parse_config("probes: [{name: a, kind: tcp, target: 'h:1'}]", "x.yml").probes
    assert (probe.period, probe.timeout, probe.failures, probe.active) == (30.0, 10.0, 3, True)


def test_a_word_yaml_takes_for_a_boolean_is_a_name_once_quoted() -> None:
    """invalid-name-boolean.yml's advice works: quoted, `off` and `Yes` are names."""
    probes = parse_config("probes:\n- {name: 'off', kind: tcp, target: 'h:1'}\n"
                          "- {name: \"Yes\", kind: tcp, target: 'h:2'}\n", "x.yml").probes
    assert [p.name for p in probes] == ["off", "Yes"]


def test_command_target_defaults_to_localhost() -> None:
    (probe,) = parse_config("probes: [{name: c, kind: command, command: {argv: ['true']}}]",
                            "x.yml").probes
    assert probe.target == "localhost"
    assert probe.options.accepted == frozenset({0})


def test_fingerprint_changes_only_with_the_definition() -> None:
    one = parse_config("probes: [{name: a, kind: tcp, target: 'h:1', tcp: {send: x}}]", "x").probes[0]
    same = parse_config("probes:\n- name: a\n  kind: tcp\n  target: 'h:1'\n  tcp: {send: x}\n",
                        "y").probes[0]
    other = parse_config("probes: [{name: a, kind: tcp, target: 'h:1', tcp: {send: y}}]", "x").probes[0]
    assert one.fingerprint == same.fingerprint
    assert one.fingerprint != other.fingerprint


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h30m", 5400), ("2", 2), (7, 7), ("1.5", 1.5),
    ("1d", 86400)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 s", "s", "1m1", "-1s", "0", True, None, "10sec"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.25, 1, 10, 90, 5400, 3661):
        assert parse_duration(format_duration(seconds)) == seconds


def test_unset_timeout_is_10s_or_four_fifths_of_a_short_period() -> None:
    probes = parse_config("""
probes:
  - {name: a, kind: tcp, target: "h:1", period: 1m}
  - {name: b, kind: tcp, target: "h:1", period: 10s}
  - {name: c, kind: tcp, target: "h:1", period: 500ms}
""", "x.yml").probes
    assert [p.timeout for p in probes] == [10.0, 8.0, 0.4]
