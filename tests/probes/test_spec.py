"""ProbeSpec: what makes two specs the same probe (reloads keep its state), and its fast constructor."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from exporter.config import parse_config
from probes import registry
from probes.spec import ProbeSpec

TEXT = "probes: [{name: a, kind: tcp, target: 'h:1', tcp: {send: x, expect: [{regex: ok}]}}]"


def one(text: str = TEXT) -> ProbeSpec[Any]:
    return parse_config(text, "x.yml").probes[0]


def test_a_spec_read_twice_is_the_same_definition_and_a_changed_one_is_not() -> None:
    first, again = one(), one()
    assert first is not again and first.same_definition(again)
    assert not first.same_definition(one(TEXT.replace("send: x", "send: y")))
    assert not first.same_definition(dataclasses.replace(first, name="b"))
    assert first.same_definition(dataclasses.replace(first, source="api"))  # where it came from aside


def test_fields_that_differ_but_show_the_same_are_judged_by_the_fingerprint() -> None:
    first = one()
    hair = dataclasses.replace(first, period=first.period + 1e-9)
    assert hair != first and hair.fingerprint == first.fingerprint
    assert first.same_definition(hair)
    longer = dataclasses.replace(first, period=first.period + 1)
    assert longer.fingerprint != first.fingerprint and not first.same_definition(longer)


def _option_classes(cls: Any, seen: set[Any]) -> None:
    """``cls`` and every dataclass its fields may hold, into ``seen``."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or cls in seen:
        return
    seen.add(cls)
    for hint in typing.get_type_hints(cls).values():
        for arg in (hint, *typing.get_args(hint), *(a for h in typing.get_args(hint) for a in typing.get_args(h))):
            _option_classes(arg, seen)


@pytest.mark.parametrize("kind", registry.kind_names())
def test_every_kinds_options_compare_every_field_a_definition_shows(kind: str) -> None:
    # same_definition trusts equal fields: that holds while no init field is left out of ==.
    try:
        options = registry.get_kind(kind).Options
    except registry.KindUnavailable:
        pytest.skip(f"{kind} cannot load here")
    classes: set[Any] = set()
    _option_classes(options, classes)
    assert options in classes
    for cls in classes:
        loose = [f.name for f in dataclasses.fields(cls) if f.init and not f.compare]
        assert loose == [], f"{cls.__name__}: {loose} are shown by definition() but not compared"


def test_plain_builds_the_spec_the_dataclass_builds() -> None:
    spec = one()
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ProbeSpec)}
    fast = ProbeSpec.plain(**fields)
    assert fast == spec and vars(fast) == vars(spec) and type(fast) is ProbeSpec
    assert not hasattr(ProbeSpec, "__post_init__")  # plain() skips __init__, so nothing may run there
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.name = "b"  # type: ignore[misc]
