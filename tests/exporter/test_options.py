"""exporter/options.py: a kind's options block decoded with every problem at its line.

How `probewatch kinds` lists the options: tests/exporter/test_option_listing.py."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from exporter.options import Duration, build, did_you_mean
from exporter.problems import ConfigProblem, Problems
from exporter.yamlsource import load_yaml

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
