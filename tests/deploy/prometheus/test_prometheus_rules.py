"""The shipped Prometheus rules and example config, checked by promtool.

The behaviour of the rules is pinned by the promtool unit tests beside this
file (*_test.yml); this module runs them and the syntax checks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.alerting_stack import with_window
from tests.support import ROOT, require_binary

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
UNIT_TESTS = sorted(Path(__file__).parent.glob("*_test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    assert len(UNIT_TESTS) >= 2, "the promtool unit tests are missing"
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_example_prometheus_config_loads_the_rules_and_alertmanager() -> None:
    result = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    assert "SUCCESS: 14 rules found" in result.stdout


def test_window_is_set_in_one_place() -> None:
    """Users (and the end-to-end test) change the window by editing one expression."""
    text = RULES.read_text(encoding="utf-8")
    shortened = with_window(text, "30s")
    assert "sum_over_time(probewatch:probe_failures:new[30s])" in shortened
    assert "probewatch:probe_failures:new[10m]" not in shortened
