"""exporter/option_listing.py: `probewatch kinds` built from the kinds' own code: every option
has a type as written in YAML, a default as YAML and a description, and the docs' option
tables agree with it."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from exporter.option_listing import describe_options, option_docs, yaml_type, yaml_value
from probes.durations import Duration
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

    spec = type("Spec", (), {"options": sip.SipOptions(method="INVITE"), "target": "sip:pbx@127.0.0.1",
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
