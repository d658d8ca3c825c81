"""Shared reply checks: status-code sets, JSON paths and JSON expectations.

These run inside every kind that reads a reply; the messages here are the ones
users read in config errors and in probewatch_probe_failure_info.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.config import ConfigError, parse_config
from probes.expectations import (
    JsonExpectation,
    JsonPath,
    StatusSet,
    json_failures,
    judge,
    load_json,
)


@pytest.mark.parametrize("spec, inside, outside", [
    ("200-399", [200, 302, 399], [199, 400, 503]),
    ("2xx", [200, 204, 299], [199, 300]),
    ("4XX", [404], [200]),
    ([200, 204], [200, 204], [201, 203]),
    ("200, 204", [200, 204], [201]),
    (["2xx", "301-302", 418], [250, 301, 302, 418], [300, 303, 417]),
    (503, [503], [500]),
])
def test_status_sets_hold_codes_classes_and_ranges(spec: Any, inside: list[int],
                                                   outside: list[int]) -> None:
    codes = StatusSet.parse(spec)
    assert all(code in codes for code in inside)
    assert not any(code in codes for code in outside)


@pytest.mark.parametrize("spec, message", [
    ("2x", "'2x' is not a status code (200), class (2xx) or range (200-399)"),
    ("ok", "'ok' is not a status code (200), class (2xx) or range (200-399)"),
    (600, "600 is not an HTTP status code (100-599)"),
    ("399-200", "range '399-200' runs backwards"),
    ([], "must name at least one status code, class (2xx) or range (200-399)"),
])
def test_bad_status_sets_say_what_is_wrong(spec: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        StatusSet.parse(spec)
    assert str(info.value) == message


DOC = {"status": "ok", "checks": [{"state": "up"}, {"state": "down"}], "a.b": 1,
       "we ird": [True], "n": None}


@pytest.mark.parametrize("path, found, value", [
    ("$.status", True, "ok"),
    ("status", True, "ok"),  # the leading $. may be left out
    ("$.checks[0].state", True, "up"),
    ("$.checks[-1].state", True, "down"),
    ("checks[1]", True, {"state": "down"}),
    ("$['a.b']", True, 1),
    ('$["we ird"][0]', True, True),
    ("$.n", True, None),
    ("$", True, DOC),
    ("$.checks[2]", False, None),
    ("$.status.x", False, None),
    ("$.checks.state", False, None),
])
def test_json_paths_name_one_value(path: str, found: bool, value: Any) -> None:
    assert JsonPath(path).find(DOC) == (found, value)


@pytest.mark.parametrize("path, why", [
    ("$..status", "recursive descent (..) is not supported"),
    ("$.checks[*].state", "wildcards, slices and filters are not supported; a path names one value"),
    ("$.checks[?(@.up)]", "wildcards, slices and filters are not supported; a path names one value"),
    ("$.checks[0:2]", "wildcards, slices and filters are not supported; a path names one value"),
    ("$.*", "wildcards, slices and filters are not supported; a path names one value"),
    ("$.", "expected a field name after '.' at position 1"),
    ("$.a[", "expected [N] or ['name'] at position 3"),
    ("$x", "unexpected 'x' at position 1"),
    ("load[0", "expected [N] or ['name'] at position 4"),  # counted in the text as written
    ("$.a['b]", "expected [N] or ['name'] at position 3"),
])
def test_bad_json_paths_say_where(path: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        JsonPath(path)
    assert str(info.value) == f"invalid JSON path {path!r}: {why}"


def expectation(**kw: Any) -> JsonExpectation:
    exp = JsonExpectation(**kw)
    assert exp.check() == []
    return exp


@pytest.mark.parametrize("kw, doc, message", [
    ({"path": "$.status", "equals": True}, {"status": True}, ""),
    ({"path": "$.status", "equals": True}, {"status": False}, "$.status is false, expected true"),
    ({"path": "$.status", "equals": True}, {"status": 1}, "$.status is 1, expected true"),
    ({"path": "$.status", "equals": 1}, {"status": 1.0}, ""),
    ({"path": "$.status", "equals": "1"}, {"status": 1}, '$.status is 1, expected "1"'),
    ({"path": "$.status"}, {"state": "ok"}, "$.status is missing"),
    ({"path": "$.v", "equals": {"a": [1, True]}}, {"v": {"a": [1, True]}}, ""),
    ({"path": "$.v", "not_equals": "down"}, {"v": "down"},
     '$.v is "down", expected anything but "down"'),
    ({"path": "$.v", "regex": "^2\\."}, {"v": "1.9"}, "$.v is \"1.9\", expected to match "
     "regex '^2\\\\.'"),
    ({"path": "$.v", "regex": "^2"}, {"v": 25}, ""),  # a number is matched as its JSON text
    ({"path": "$.load", "max": 4}, {"load": 7.5}, "$.load is 7.5, expected at most 4"),
    ({"path": "$.load", "min": 1, "max": 4}, {"load": 0}, "$.load is 0, expected at least 1"),
    ({"path": "$.load", "min": 1}, {"load": "high"}, '$.load is "high", expected a number'),
    ({"path": "$.error", "exists": False}, {"ok": 1}, ""),
    ({"path": "$.error", "exists": False}, {"error": "disk full"},
     '$.error is "disk full", expected it to be absent'),
])
def test_json_expectations_say_which_path_held_what(kw: dict[str, Any], doc: Any,
                                                    message: str) -> None:
    assert expectation(**kw).failure(doc) == message


def test_every_unmet_expectation_is_listed() -> None:
    exps = [expectation(path="$.status", equals=True), expectation(path="$.ok"),
            expectation(path="$.version", regex="^2")]
    assert json_failures(exps, {"status": "up", "version": "2.1"}) == [
        '$.status is "up", expected true', "$.ok is missing"]


def test_non_json_reply_says_why_and_shows_what_came() -> None:
    with pytest.raises(ValueError) as info:
        load_json(b"<html>oops</html>", "reply")
    assert str(info.value) == ("reply is not JSON (Expecting value at line 1 column 1): "
                               "'<html>oops</html>'")


def test_bad_expectations_are_config_errors_at_their_key() -> None:
    text = """\
probes:
  - name: p
    kind: http
    target: http://127.0.0.1:1/
    http:
      expect:
        - {path: $.a, exists: false, equals: 1}
        - path: $.b
          min: 5
          max: 1
        - {path: $.c, regex: "("}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yml")
    assert [str(p) for p in info.value.problems] == [
        "c.yml:7: probes[0] (p): http.expect[0].exists: false cannot be combined with equals",
        "c.yml:9: probes[0] (p): http.expect[1].min: 5 is greater than max (1)",
        "c.yml:11: probes[0] (p): http.expect[2].regex: invalid regular expression '(': "
        "missing ), unterminated subpattern at position 0",
    ]


def test_text_expectations_are_literal_unless_regex() -> None:
    literal = [JsonExpectation(text="+OK POP3")]
    assert judge(literal, "+OK POP3 server ready") == ""
    assert judge(literal, "+OK IMAP") == "reply lacks '+OK POP3': got '+OK IMAP'"
    pattern = JsonExpectation(regex="^220 .*ESMTP")
    assert pattern.check() == []
    assert judge([pattern], "220 mail ESMTP Postfix") == ""
    assert judge([JsonExpectation(text="+OK.")], "+OK POP3") != ""  # literal: the dot is a dot


def test_one_list_judges_text_regex_and_json_items_in_order() -> None:
    items = [JsonExpectation(text="ok"), JsonExpectation(not_regex="err(or)?"),
             JsonExpectation(path="$.load", max=4)]
    for item in items:
        assert item.check() == []
    assert judge(items, '{"state": "ok", "load": 1}') == ""
    assert judge(items, '{"state": "ok", "load": 9}') == "$.load is 9, expected at most 4"
    assert judge(items, '{"state": "ok error"}') == "reply matches regex 'err(or)?' ('error')"
    assert judge(items, "ok, but not JSON").startswith("reply is not JSON (")
    assert judge(items, "<html>", "body", got=False) == "body lacks 'ok'"


def test_regexes_run_on_re2_and_lookarounds_on_a_bounded_prefix() -> None:
    import time

    from probes.expectations import BACKTRACKING_LIMIT, compile_regex

    linear = compile_regex(r"(?s).*x.*y.*z")
    assert linear.linear
    started = time.perf_counter()
    assert linear.search("a" * (1 << 20)) is None
    assert time.perf_counter() - started < 1.0, "a 1 MiB body must match in linear time"
    assert compile_regex(r"err(or)").search("an error here").group() == "error"
    ahead = compile_regex(r"foo(?=bar)")
    assert not ahead.linear
    assert ahead.search("xx foobar").group() == "foo"
    assert ahead.search("a" * BACKTRACKING_LIMIT + "foobar") is None  # beyond the bounded prefix
