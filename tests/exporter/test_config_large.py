"""Large configs: the fast YAML path keeps every line, so a bad probe deep in a big file is
reported at its exact line, and any YAML it does not take gives the node-based loader's result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import ConfigError, load_config
from exporter.yamlsource import LineDict, LineList, _Fallback, _fast_load, _Loader
from tests.support import ROOT

HEAD = ["defaults:", "  period: 30s", "  labels: {team: bench}", "probes:"]


def probe_lines(i: int) -> str:
    return f"  - {{name: tcp-{i:06d}, kind: tcp, target: '127.0.0.1:{1024 + i % 60000}'}}"


def write_config(path: Path, count: int, bad_at: int, bad: list[str]) -> int:
    """``count`` probes with ``bad`` (block-style lines) in place of probe ``bad_at``; its first line."""
    lines = list(HEAD)
    first = 0
    for i in range(count):
        if i == bad_at:
            first = len(lines) + 1
            lines.extend(bad)
        else:
            lines.append(probe_lines(i))
    path.write_text("\n".join(lines) + "\n")
    return first


def test_unknown_key_in_probe_50000_of_60000_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    first = write_config(path, 60000, 50000, [
        "  - name: bad-one", "    kind: tcp", "    target: 127.0.0.1:9", "    colour: blue"])
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:{first + 3}: probes[50000] (bad-one): colour: unknown key"
        " (kind options go in a block named after the kind)"]


def test_yaml_the_fast_path_does_not_take_still_names_the_line(tmp_path: Path) -> None:
    # An anchor and a duplicate key send the document to the node-based loader.
    path = tmp_path / "big.yml"
    first = write_config(path, 20000, 15000, [
        "  - &bad {name: bad-two, kind: tcp, target: 127.0.0.1:9, period: 0s}"])
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:{first}: probes[15000] (bad-two): period: '0s' must be greater than zero"]
    write_config(path, 20000, 15000, ["  - {name: dup, kind: tcp, kind: udp}"])
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:{first}: invalid YAML: duplicate key 'kind'"]


def shape(obj: Any) -> Any:
    """Data with every line the loaders recorded, for comparing the two."""
    if isinstance(obj, LineDict):
        return ("map", obj.line, dict(obj.key_lines), {k: shape(v) for k, v in obj.items()})
    if isinstance(obj, LineList):
        return ("seq", obj.line, list(obj.item_lines), [shape(v) for v in obj])
    assert not isinstance(obj, dict | list), "a plain dict or list has no lines"
    return (type(obj).__name__, obj)


YAML_FILES = sorted([*(ROOT / "tests" / "fixtures").glob("*.yml"), *(ROOT / "examples").glob("*.yml")])
SNIPPETS = ["", "---\n", "x\n", "a: {b: [1, 2.5, true, null, ~, 2020-01-01, 0x1F, 1_000, .inf, yes]}\n",
            "a:\n  b:\n    - c: |\n        two\n        lines\n      d: >-\n        folded\n",
            "a: !!str 3\nb: '1'\nc: \"t\\u00e9\"\n", "a: 1 # comment\n# more\n"]


@pytest.mark.parametrize("text", [p.read_text() for p in YAML_FILES] + SNIPPETS,
                         ids=[p.name for p in YAML_FILES] + [f"snippet{i}" for i in range(len(SNIPPETS))])
def test_fast_path_builds_what_the_node_based_loader_builds(text: str) -> None:
    try:
        expected = ("ok", shape(yaml.load(text, Loader=_Loader)))
    except yaml.YAMLError:
        expected = ("error", None)
    try:
        fast = ("ok", shape(_fast_load(text)))
    except _Fallback:
        return  # the node-based loader's own result stands
    assert fast == expected


SIMPLE_PROBES = [
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "5s", "timeout": "1s",
     "failures": 7, "active": False, "histogram": True},
    {"name": "ok", "kind": "tcp", "target": "${listen}"},
    {"name": "ok", "kind": "http"},  # the kind's default target
    {"name": "ok", "kind": "command", "target": "x"},  # a required option missing
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "5ms"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "2s", "timeout": "2s"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "timeout": "0.5ms"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "failures": 0},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "failures": 1001},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "soon"},
    {"name": "b d", "kind": "tcp", "target": "127.0.0.1:9"},
    {"name": "n" * 129, "kind": "tcp", "target": "127.0.0.1:9"},
    {"name": "ok", "kind": "tcp", "target": ""},
    {"name": "ok", "kind": "tcp", "target": "x" * 2049},
    {"name": "ok", "kind": "tcp", "target": "no-port"},
    {"name": "ok", "kind": "tpc", "target": "127.0.0.1:9"},
    {"name": "", "kind": "tcp", "target": "127.0.0.1:9"},
    {"kind": "tcp", "target": "127.0.0.1:9"},
    {"name": "ok", "target": "127.0.0.1:9"},
    {"name": "ok", "kind": "tcp", "target": "h\u00f4te.example:9"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9\ud800"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "1\ud800s"},
    {"name": "ok", "kind": "tc\ud800", "target": "127.0.0.1:9"},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "failures": 2**60},
    {"name": "ok", "kind": "tcp", "target": "127.0.0.1:9", "period": "1" * 70000},
]


@pytest.mark.parametrize("raw", SIMPLE_PROBES, ids=[str(i) for i in range(len(SIMPLE_PROBES))])
def test_simple_probes_get_the_general_paths_spec_and_problems(raw: dict[str, Any]) -> None:
    from exporter.config import Defaults, parse_probe
    from exporter.problems import Problems

    lined = LineDict(raw)
    lined.line = 7
    lined.key_lines = {key: 7 + i for i, key in enumerate(raw)}
    defaults = Defaults(period=10.0, labels={"team": "x"})
    fast_problems, general_problems = Problems(), Problems()
    fast = parse_probe(lined, defaults, fast_problems, line=7)
    general = parse_probe(dict(raw), defaults, general_problems, line=7)  # a plain dict: the general path
    assert fast == general
    assert [(p.key, p.message) for p in fast_problems] == [(p.key, p.message) for p in general_problems]
