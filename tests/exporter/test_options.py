"""exporter/options.py: a kind's options block decoded with every problem at its line, and
`probewatch kinds` built from the kinds' own code: every option has a type as written in
YAML, a default as YAML and a description, and the docs' option tables agree with it."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

import pytest

from exporter.options import (
    Duration,
    build,
    describe_options,
    did_you_mean,
    option_docs,
    yaml_type,
    yaml_value,
)
from exporter.problems import ConfigProblem, Problems
from exporter.yamlsource import load_yaml
from probes.registry import KindUnavailable, get_kind, kind_names
from tests.support import ROOT, missing, no_sip_reason

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("probes-*.md"))]


def kind_options(name: str) -> type:
    try:
        return get_kind(name).Options  # type: ignore[no-any-return]
    except KindUnavailable as exc:
        if reason := no_sip_reason():
            pytest.skip(f"kind {name} is not installed here ({reason})")
        missing(f"kind {name} ({exc})")
        raise


def option_classes(cls: type) -> list[type]:
    """``cls`` and every dataclass nested in its fields (tls:, auth:, expect: items)."""
    found, todo = [], [cls]
    while todo:
        klass = todo.pop()
        if klass in found:
            continue
        found.append(klass)
        for tp in typing.get_type_hints(klass).values():
            for arg in [tp, *typing.get_args(tp), *[a for t in typing.get_args(tp) for a in typing.get_args(t)]]:
                if isinstance(arg, type) and dataclasses.is_dataclass(arg) and arg.__module__.startswith("probes"):
                    todo.append(arg)
    return found


@pytest.mark.parametrize("kind", kind_names())
def test_every_option_of_every_kind_has_a_type_default_and_description(kind: str) -> None:
    rows = describe_options(kind_options(kind))
    assert rows, kind
    for row in rows:
        assert len(row.doc) >= 10, (kind, row)
        assert row.type and "<" not in row.type and "typing" not in row.type and "Optional" not in row.type, row
        assert row.default and "(" not in row.default and "Options" not in row.default, row
    # No description names an option that does not exist (a renamed or removed field).
    for klass in option_classes(kind_options(kind)):
        keys = {f.metadata.get("key", f.name) for f in dataclasses.fields(klass) if f.init}
        assert set(option_docs(klass)) <= keys | {f.name for f in dataclasses.fields(klass)}, klass


def test_types_and_defaults_read_as_yaml() -> None:
    from exporter.options import Duration

    assert yaml_type(list[int]) == "list of integers"
    assert yaml_type(Duration) == "duration"
    assert yaml_type(dict[str, str]) == "mapping of string to string"
    assert yaml_type(typing.Literal["a", "b"] | None) == "one of a, b"
    assert [yaml_value(v) for v in ("", [], {}, "CONFIRMED", None, True, "a: b")] == \
        ['""', "[]", "{}", "CONFIRMED", "null", "true", '"a: b"']
    assert yaml_value(10.0, Duration) == "10s" and yaml_value(0.5, Duration) == "500ms"
    assert yaml_value({"OK": 0, "Bad": [1, "x y"]}) == "{OK: 0, Bad: [1, x y]}"


def test_sip_success_state_default_is_the_state_a_call_must_reach() -> None:
    rows = {r.key: r for r in describe_options(kind_options("sip"))}
    assert rows["success_state"].default == "CONFIRMED"
    from probes import sip

    spec = type("Spec", (), {"options": sip.SipOptions(method="INVITE"), "target": "sip:127.0.0.1:5060",
                             "name": "pbx", "timeout": 5.0})()
    assert sip.SipProbe(spec).success_state == "CONFIRMED"


def _doc_tables() -> list[tuple[str, list[str], str, str]]:
    """(file:line, kinds of the section, key, default cell) of every option table in the docs."""
    names = kind_names()
    out = []
    for path in DOCS:
        h2: list[str] = []
        h3: list[str] = []
        default_col = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            heading = re.match(r"^(#{2,3}) (.*)", line)
            if heading:
                found = [k for k in names if re.search(rf"(`{k}:?`|^{k}\b| {k}\b)", heading.group(2))]
                if heading.group(1) == "##":
                    h2, h3 = found, []
                else:
                    h3 = found
                default_col = None
                continue
            if not line.startswith("|"):
                default_col = None
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if default_col is None:
                default_col = cells.index("default") if "default" in cells else -1
                continue
            key = re.fullmatch(r"`([a-z_]+)`", cells[0])
            if default_col < 0 or not key or set(cells[0]) <= set("-|"):
                continue
            kinds = h3 or h2
            if kinds:
                out.append((f"{path.name}:{number}", kinds, key.group(1), cells[default_col]))
    return out


def test_option_tables_in_the_docs_agree_with_kinds() -> None:
    rows = _doc_tables()
    assert len(rows) >= 40, rows  # the tables of README.md and docs/probes-*.md were all read
    checked = 0
    for where, kinds, key, cell in rows:
        for kind in kinds:
            try:
                options = describe_options(get_kind(kind).Options)
            except KindUnavailable:
                continue
            found = [r for r in options if r.key == key] or [r for r in options if r.key.endswith("." + key)]
            assert found, f"{where}: {kind} has no option {key!r}"
            value = re.match(r"^`([^`]*)`", cell)
            if value and len(found) == 1:
                assert found[0].default == value.group(1), f"{where}: {kind} {key}: docs {cell}, kinds {found[0]}"
                checked += 1
    assert checked >= 30


# --- decoding a block into a kind's Options (build): every problem, with its line ------------


@dataclasses.dataclass
class _Peer:
    port: int
    host: str = ""


@dataclasses.dataclass
class _Opts:
    """A kind's options as the decoder sees them (test-only)."""

    name: str
    count: int = 1
    ratio: float = 0.5
    verbose: bool = False
    mode: typing.Literal["a", "b"] = "a"
    wait: float = dataclasses.field(default=1.0, metadata={"key": "wait"})
    every: Duration = 10.0
    tags: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, int] = dataclasses.field(default_factory=dict)
    peer: _Peer | None = None
    either: int | list[int] = 0

    def check(self) -> list[tuple[str, str]]:
        return [("count", "must be below 10 when mode is b")] if self.count >= 10 and self.mode == "b" else []


def decode(text: str) -> tuple[Any, list[ConfigProblem]]:
    problems = Problems()
    return build(_Opts, load_yaml(text), problems), list(problems)


def test_a_good_block_becomes_typed_options() -> None:
    opts, problems = decode("name: x\ncount: 3\nratio: 2\nverbose: true\nmode: b\nevery: 1m30s\n"
                            "tags: [a, 7]\nenv: {A: 1}\npeer: {port: 5}\neither: [1, 2]\n")
    assert problems == []
    assert opts == _Opts(name="x", count=3, ratio=2.0, verbose=True, mode="b", every=90.0,
                         tags=["a", "7"], env={"A": 1}, peer=_Peer(5), either=[1, 2])
    assert isinstance(opts.ratio, float)


def test_every_bad_key_is_reported_at_its_line_not_just_the_first() -> None:
    opts, problems = decode("""\
name: x
count: true
mode: c
every: 5 parsecs
tags: [a, {b: 1}]
env: {A: x}
peer: {prt: 1}
either: [1, x]
colour: red
""")
    assert opts is None
    assert [(p.line, p.key, p.message) for p in problems] == [
        (2, "count", "must be an integer, not true"),
        (3, "mode", "must be one of 'a', 'b', not 'c'"),
        (4, "every", "'5 parsecs' is not a duration (use 500ms, 10s, 5m, 1h30m or seconds)"),
        (5, "tags[1]", "must be a string, not a mapping"),
        (6, "env.A", "must be an integer, not 'x'"),
        (7, "peer.prt", "unknown key; did you mean port? (known keys: host, port)"),
        (7, "peer.port", "is required"),
        (8, "either[1]", "must be an integer, not 'x'"),
        (9, "colour", "unknown key (known keys: count, either, env, every, mode, name, peer, ratio,"
                      " tags, verbose, wait)"),
    ]


def test_a_missing_required_key_is_named_once_even_when_misspelt() -> None:
    _, problems = decode("nmae: x\n")
    assert [(p.key, p.message.split(" (")[0]) for p in problems] == [
        ("nmae", "unknown key; did you mean name?"), ("name", "is required")]


def test_a_value_of_neither_shape_names_both() -> None:
    _, problems = decode("name: x\neither: {a: 1}\n")
    assert [(p.line, p.key, p.message) for p in problems] == [
        (2, "either", "must be an integer or a list of integers, not a mapping")]


def test_checks_across_fields_run_after_the_types_and_point_at_their_key() -> None:
    opts, problems = decode("name: x\nmode: b\n\ncount: 12\n")
    assert opts is None
    assert [(p.line, p.key, p.message) for p in problems] == [
        (4, "count", "must be below 10 when mode is b")]
    assert decode("name: x\ncount: 12\n")[1] == []


@pytest.mark.parametrize(("word", "choices", "guess"), [
    ("tpc", ["tcp", "udp", "http"], "tcp"),
    ("HTTP", ["tcp", "http"], "http"),
    ("ping", ["tcp", "icmp"], "icmp"),  # Moniteur's name for it
    ("script", ["kind", "target"], "kind"),
    ("zzz", ["tcp", "udp"], None),
])
def test_did_you_mean_offers_the_likely_key_or_nothing(word: str, choices: list[str],
                                                      guess: str | None) -> None:
    assert did_you_mean(word, choices) == guess


def test_a_misspelt_option_in_a_config_gets_a_suggestion_with_file_and_line() -> None:
    from exporter.config import ConfigError, parse_config

    text = "probes:\n  - name: x\n    kind: tcp\n    target: 127.0.0.1:1\n    tcp:\n      sned: hi\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yml")
    assert str(caught.value).startswith("t.yml:6: probes[0] (x): tcp.sned: unknown key; did you mean send?")
