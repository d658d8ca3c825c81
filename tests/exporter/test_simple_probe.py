"""Plain probes read the fast way share what one load has alike, and only that."""

from __future__ import annotations

import pickle

from exporter.config import parse_config

PLAIN = "defaults: {labels: {team: a}}\nprobes:\n" + "".join(
    f"  - {{name: p{i}, kind: tcp, target: '127.0.0.1:{9000 + i % 3}'}}\n" for i in range(30))


def test_plain_probes_of_one_load_share_their_default_options_and_labels() -> None:
    probes = parse_config(PLAIN, "x.yml").probes
    assert len({id(p.options) for p in probes}) == 1
    assert len({id(p.labels) for p in probes}) == 1 and probes[0].labels == (("team", "a"),)
    assert len({id(p.target) for p in probes}) == 3  # one str per repeated text
    other = parse_config(PLAIN, "x.yml").probes
    assert other[0].options is not probes[0].options  # shared within a load, not across


def test_a_probe_with_its_own_options_has_its_own_object() -> None:
    probes = parse_config(PLAIN + "  - {name: own, kind: tcp, target: 'h:1', tcp: {send: x}}\n",
                          "x.yml").probes
    assert probes[-1].options is not probes[0].options
    assert probes[-1].options.send == "x" and probes[0].options.send == ""


def test_shared_options_pickle_once() -> None:
    probes = parse_config(PLAIN, "x.yml").probes
    again = pickle.loads(pickle.dumps(probes))
    assert again == probes and len({id(p.options) for p in again}) == 1
