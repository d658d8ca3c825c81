"""YAML with line numbers (exporter/yamlsource.py): what a config's author sees when the file is wrong."""

from __future__ import annotations

import time

import pytest

from exporter.config import ConfigError, parse_config
from exporter.yamlsource import LineDict, LineList, YamlError, load_yaml


def test_every_key_and_item_knows_its_line() -> None:
    data = load_yaml("""\
defaults:
  period: 10s

probes:
  - name: a
    kind: tcp
  - name: b
""")
    assert isinstance(data, LineDict)
    assert (data.line_of("defaults"), data.line_of("probes")) == (1, 4)
    probes = data["probes"]
    assert isinstance(probes, LineList)
    assert [probes.line_of(i) for i in range(2)] == [5, 7]
    assert probes[0].line_of("kind") == 6
    # something not there points at its mapping (the best line to name)
    assert probes[1].line_of("kind") == 7
    assert probes.line_of(5) == probes.line


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb:\n  c: 2\n  c: 3\n", 4, "invalid YAML: duplicate key 'c'"),
    ("1: x\n'1': y\n", 2, "invalid YAML: duplicate key '1'"),  # one key once it is text
    ("probes: [1,\n", 2, "invalid YAML: did not find expected node content (while parsing a flow node)"),
    ("a: 1\n\tb: 2\n", 2, "invalid YAML: found a tab character that violates indentation"
                          " (while scanning a plain scalar)"),
    ("a: b: c\n", 1, "invalid YAML: mapping values are not allowed in this context"),
])
def test_a_syntax_error_names_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    assert (caught.value.line, caught.value.message) == (line, message)


def test_a_duplicate_probe_key_in_a_config_is_reported_with_file_and_line() -> None:
    text = "probes:\n  - name: web\n    kind: tcp\n    target: 127.0.0.1:1\n    kind: udp\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "probes.yml")
    assert str(caught.value) == "probes.yml:5: invalid YAML: duplicate key 'kind'"


def test_keys_read_as_written_even_where_yaml_would_make_them_booleans_or_numbers() -> None:
    data = load_yaml("on: 1\nno: 2\n3: three\n0x10: hex\n")
    assert list(data) == ["on", "no", "3", "0x10"]
    with pytest.raises(ConfigError) as caught:
        parse_config("probes: []\non: true\n", "t.yml")
    assert str(caught.value).startswith("t.yml:2: on: unknown key")


def test_python_tags_are_refused_not_run() -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml("a: !!python/object/apply:os.system [touch /tmp/never]\n")
    assert caught.value.line == 1
    assert "could not determine a constructor for the tag" in caught.value.message


def test_merge_keys_and_anchors_work_as_in_any_yaml() -> None:
    """``<<: *common`` then a key of its own overrides the merged one (that is no duplicate)."""
    data = load_yaml("common: &c {period: 5s, timeout: 1s}\n"
                     "more: &m {timeout: 3s, labels: {team: x}}\n"
                     "probe:\n  <<: [*c, *m]\n  timeout: 2s\n")
    assert data["probe"] == {"period": "5s", "timeout": "2s", "labels": {"team": "x"}}
    assert data["probe"].line_of("timeout") == 5
    merged_only = load_yaml("common: &c {period: 5s, timeout: 1s}\nprobe:\n  <<: *c\n")
    assert merged_only["probe"] == {"period": "5s", "timeout": "1s"}
    with pytest.raises(YamlError) as caught:
        load_yaml("common: &c {period: 5s}\nprobe:\n  <<: *c\n  timeout: 2s\n  timeout: 3s\n")
    assert (caught.value.line, caught.value.message) == (5, "invalid YAML: duplicate key 'timeout'")


def test_a_probe_merging_an_anchored_block_overrides_what_it_sets_itself() -> None:
    text = """\
defaults: &base {period: 30s, timeout: 5s}
probes:
  - <<: *base
    name: web
    kind: tcp
    target: 127.0.0.1:1
    timeout: 2s
"""
    spec = parse_config(text, "t.yml").probes[0]
    assert (spec.period, spec.timeout) == (30.0, 2.0)


def test_an_alias_bomb_loads_without_expanding_and_the_config_refuses_it() -> None:
    rows = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    anchors = "\n".join(rows)
    started = time.monotonic()
    data = load_yaml(f"x:\n{anchors}\n")
    assert data["x"]["a8"][0] is data["x"]["a8"][1]  # shared, not 9**9 copies
    text = (f"probes:\n  - name: p\n    kind: tcp\n    target: 127.0.0.1:1\n    labels:\n"
            f"      x: &top\n{anchors.replace('  a', '        a')}\n      big: *a8\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yml")
    assert "probes[0] (p): holds more than 100000 values" in str(caught.value)
    assert time.monotonic() - started < 10


def test_nesting_too_deep_is_an_error_not_a_crash() -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml("[" * 100_000)
    assert caught.value.message.startswith("invalid YAML: ")


def test_an_empty_file_is_nothing_and_scalars_keep_their_yaml_types() -> None:
    assert load_yaml("") is None
    assert load_yaml("a: 1\nb: true\nc: 1.5\nd: null\ne: '1'\n") == {
        "a": 1, "b": True, "c": 1.5, "d": None, "e": "1"}


def test_a_text_repeated_through_a_document_is_one_object() -> None:
    from exporter.yamlsource import _fast_load

    data = _fast_load("probes:\n- {kind: tcp, target: '127.0.0.1:9'}\n- {kind: tcp, target: '127.0.0.1:9'}\n")
    first, second = data["probes"]
    assert first == second
    assert first["kind"] is second["kind"] and first["target"] is second["target"]
    assert next(iter(first)) is next(iter(second))  # the keys too
