"""Sharding: disjoint shards that together cover every probe, stable across runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.sharding import Shard, ordinal_from_hostname, parse_shard
from tests.exporter.exporter_process import serve


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_every_probe(count: int) -> None:
    names = [f"probe-{i}" for i in range(5000)]
    owners = {name: [i for i in range(count) if Shard(i, count).owns(name)] for name in names}
    assert all(len(o) == 1 for o in owners.values())
    sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(count)]
    assert min(sizes) > 0.8 * len(names) / count  # balanced within 20%


def test_parse_and_ordinal() -> None:
    assert parse_shard("1/3") == Shard(1, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    assert ordinal_from_hostname("probewatch-2") == 2
    with pytest.raises(ValueError):
        ordinal_from_hostname("probewatch")


def test_two_exporters_split_the_probes(tmp_path: Path) -> None:
    config = tmp_path / "p.yml"
    names = [f"c{i}" for i in range(20)]
    config.write_text("probes:\n" + "".join(
        f"  - {{name: {n}, kind: command, period: 10s, command: {{argv: ['true']}}}}\n" for n in names))
    seen = []
    for i in range(2):
        with serve(config, f"--shard={i}/2") as pw:
            assert pw.value("probewatch_shard_info", shard=str(i), shards="2") == 1
            seen.append({dict(labels)["probe"] for (name, labels) in pw.samples()
                         if name == "probewatch_probe_runs_total"})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(names)


def test_shard_from_statefulset_hostname(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "p.yml"
    config.write_text("probes: []\n")
    monkeypatch.setenv("HOSTNAME", "probewatch-1")
    monkeypatch.setenv("PROBEWATCH_SHARDS", "3")
    with serve(config, "--shard-from-hostname") as pw:
        assert pw.value("probewatch_shard_info", shard="1", shards="3") == 1
