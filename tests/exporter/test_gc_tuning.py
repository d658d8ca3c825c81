"""exporter/gc_tuning.py: the collector paused for an apply comes back as it was."""

from __future__ import annotations

import gc

import pytest

from exporter.gc_tuning import collector_paused


def test_the_collector_is_off_inside_and_as_before_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
