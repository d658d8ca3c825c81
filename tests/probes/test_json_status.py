"""kind json against a real HTTP server serving Megaphone-style status documents."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.http import CERT_EXPIRY, CONTENT_LENGTH
from probes.json_status import STATUS_LEVEL, VALUE
from tests.probes.servers import closed_port
from tests.probes.test_http import (
    MEGAPHONE,
    LoopbackServer,
    Pki,
    make_pki,
    megaphone_document,
    probe_config,
    reading,
    run,
    serving,
)
from tests.support import ROOT, probewatch_argv


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    with serving() as server:
        yield server


@pytest.mark.parametrize("level, number", [("OK", 0), ("Unknown", 1), ("Warning", 2),
                                           ("Critical", 3)])
def test_each_megaphone_level_is_exported_and_only_ok_is_up(
        web: LoopbackServer, level: str, number: int) -> None:
    result = run("json", f"{web.base}/megaphone/{level}")
    assert (result.up, result.code) == (level == "OK", 200)
    assert (result.level, result.level_name) == (number, level)
    assert result.message == MEGAPHONE[level]
    assert reading(result, STATUS_LEVEL) == number
    body = json.dumps(megaphone_document(level)).encode()
    assert reading(result, CONTENT_LENGTH) == len(body)
    if level != "OK":
        assert result.reason == "unexpected_response"


def test_level_names_are_case_insensitive_and_numbers_are_levels(web: LoopbackServer) -> None:
    lower = run("json", f"{web.base}/megaphone/lower")
    assert (lower.up, lower.level, lower.level_name) == (False, 2, "Warning")
    numeric = run("json", f"{web.base}/megaphone/numeric")
    assert (numeric.level, numeric.level_name, numeric.message) == (
        2, "Warning", "level given as a number")


def test_unknown_level_is_unexpected_response_naming_it(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/megaphone/purple")
    assert (result.up, result.reason, result.code, result.level) == (
        False, "unexpected_response", 200, None)
    assert result.message == 'status is "Purple", not a known level (OK, Unknown, Warning, Critical)'
    assert reading(result, STATUS_LEVEL) is None


def test_document_without_the_field_is_unexpected_response(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/megaphone/nostatus")
    assert (result.up, result.reason) == (False, "unexpected_response")
    assert result.message == ('the document has no status field: {"date": '
                              '"2013-06-06T14:49:26CDT", "message": "forgot the...')


def test_body_that_is_not_json_is_unexpected_response(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/badjson")
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 200)
    assert result.message == ("body is not JSON (Expecting property name enclosed in double "
                              "quotes at line 1 column 2): '{status: ok'")


def test_missing_message_falls_back_to_the_level(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/megaphone/nomessage")
    assert (result.up, result.level, result.message) == (False, 3, "status is Critical")


def test_numeric_fields_asked_for_become_values(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/megaphone/values",
                 {"values": ["queue", "load", "$.nested.depth", "name", "flag", "absent"]})
    assert result.up
    values = {dict(r.labels)["field"]: r.value for r in result.readings if r.metric == VALUE}
    assert values == {"queue": 7, "load": 0.25, "$.nested.depth": 3}  # not text, bool, absent


def test_level_table_ok_levels_and_fields_are_configurable(web: LoopbackServer) -> None:
    traffic = {"levels": {"green": 0, "amber": 5, "red": 9}, "ok_levels": ["Green", "AMBER"]}
    amber = run("json", f"{web.base}/megaphone/amber", traffic)
    assert (amber.up, amber.level, amber.level_name, amber.message) == (
        True, 5, "amber", "amber reported")
    red = run("json", f"{web.base}/megaphone/red", traffic)
    assert (red.up, red.level, red.reason) == (False, 9, "unexpected_response")
    warning_ok = run("json", f"{web.base}/megaphone/Warning", {"ok_levels": ["OK", "Warning"]})
    assert (warning_ok.up, warning_ok.level) == (True, 2)
    by_version = run("json", f"{web.base}/megaphone/OK", {
        "status_field": "$.version", "message_field": "date", "levels": {"2.0.0": 0},
        "ok_levels": ["2.0.0"]})
    assert (by_version.up, by_version.level_name, by_version.message) == (
        True, "2.0.0", "2013-06-06T14:49:26CDT")


def test_json_expectations_apply_after_the_level(web: LoopbackServer) -> None:
    good = run("json", f"{web.base}/megaphone/OK", {"expect": [{"path": "$.id", "equals": "foo"}]})
    assert good.up
    bad = run("json", f"{web.base}/megaphone/OK",
              {"expect": [{"path": "$.version", "regex": "^3\\."}]})
    assert (bad.up, bad.reason, bad.level) == (False, "unexpected_response", 0)
    assert bad.message == "$.version is \"2.0.0\", expected to match regex '^3\\\\.'"


def test_status_code_outside_expect_status_comes_first(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/unavailable")
    assert (result.up, result.reason, result.code, result.level) == (
        False, "unexpected_code", 503, None)


def test_refused_is_reason_refused() -> None:
    result = run("json", f"http://127.0.0.1:{closed_port()}/status")
    assert (result.up, result.reason, result.code) == (False, "refused", -1)


def test_post_sends_its_body(web: LoopbackServer) -> None:
    result = run("json", f"{web.base}/megaphone/OK",
                 {"method": "POST", "json": {"id": "bar", "url": "http://localhost/q"}})
    assert result.up
    assert (web.seen[-1].method, json.loads(web.seen[-1].body)) == (
        "POST", {"id": "bar", "url": "http://localhost/q"})


def test_status_document_over_https_exports_cert_expiry(tmp_path: Path) -> None:
    pki: Pki = make_pki(tmp_path)
    with serving(tls=pki.server_context()) as tls_web:
        target = f"https://localhost:{tls_web.server_address[1]}/megaphone/OK"
        result = run("json", target, {"tls": {"ca_file": str(pki.ca)}})
    assert (result.up, result.level) == (True, 0)
    assert reading(result, CERT_EXPIRY) == pki.not_after.timestamp()


def test_probe_command_shows_level_and_exits_1_when_not_ok(
        web: LoopbackServer, tmp_path: Path) -> None:
    target = f"{web.base}/megaphone/Warning"
    path = tmp_path / "probewatch.yml"
    path.write_text(probe_config("json", target, {"values": ["missing"]}))
    proc = subprocess.run(probewatch_argv("probe", "t", f"--config.file={path}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:3] == ["result:  down", "code:    200"]
    assert "reason:  unexpected_response" in lines
    assert "message: Houston, I think we have a problem." in lines
    labels = f'probe="t",kind="json",target="{target}"'
    assert f"  probewatch_probe_status_level{{{labels}}} 2" in lines
