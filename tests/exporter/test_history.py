"""The compact run history keeps the last N runs in order, with their details."""

from __future__ import annotations

import pytest

from exporter.history import Run, RunHistory


def run(i: int, up: bool = True, message: str = "ok", level: str | None = None) -> Run:
    return Run(float(i), i / 1000, up, 200 if up else -1, "" if up else "timeout", message, level)


def test_keeps_the_last_runs_oldest_first() -> None:
    history = RunHistory(5)
    for i in range(12):
        history.append(run(i, up=i % 3 != 0, message=f"m{i}"))
    runs = list(history)
    assert [r.started for r in runs] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [r.up for r in runs] == [True, True, False, True, True]
    assert runs[2] == Run(9.0, runs[2].latency, False, -1, "timeout", "m9")
    assert abs(runs[2].latency - 0.009) < 1e-6  # float32 storage
    assert len(history) == 5


def test_partial_history_and_levels_and_copy() -> None:
    history = RunHistory(100)
    history.append(run(1))
    history.append(run(2, level="Warning"))
    assert [r.level_name for r in history] == [None, "Warning"]
    copied = history.copy()
    history.append(run(3))
    assert len(copied) == 2 and len(history) == 3


def test_unknown_reason_is_kept_as_error() -> None:
    history = RunHistory(3)
    history.append(Run(1.0, 0.1, False, 1, "weird", "x"))
    assert next(iter(history)).reason == "error"


def test_a_new_message_every_run_keeps_the_last_ones_exactly() -> None:
    # A command printing the time: 1,000 distinct messages through a ring of 100,
    # past the 255 distinct messages a history indexes before it compacts.
    history = RunHistory(100)
    for i in range(1000):
        history.append(run(i, up=i % 7 != 0, message=f"at {i}"))
    runs = list(history)
    assert [r.message for r in runs] == [f"at {i}" for i in range(900, 1000)]
    assert [r.up for r in runs] == [i % 7 != 0 for i in range(900, 1000)]


def test_codes_past_16_bits_are_kept_whole() -> None:
    history = RunHistory(4)
    for code in (200, -1, 70000, -2**31, 404):
        history.append(Run(0.0, 0.1, True, code, "", "ok"))
    assert [r.code for r in history] == [-1, 70000, -2**31, 404]


def test_a_history_longer_than_its_message_index_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 255"):
        RunHistory(256)
