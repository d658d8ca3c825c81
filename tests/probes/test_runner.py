"""probes.runner.run_once: the deadline is the scheduler's, the kind says what a cut run saw."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from probes.base import Kind, Result
from probes.runner import run_once


@dataclass
class Spec:
    name: str = "t"
    timeout: float = 0.2
    options: object = None


class Slow(Kind):
    """Waits past any deadline; remembers the deadline it was given."""

    Options = object
    given: float = 0.0

    async def run(self, deadline: float) -> Result:
        self.given = deadline
        await asyncio.sleep(10)
        return Result.ok()


class Telling(Slow):
    def timed_out(self, timeout: float) -> Result:
        return Result.fail("timeout", f"saw nothing in {timeout}s", code=7)


class OwnTimeout(Kind):
    Options = object

    async def run(self, deadline: float) -> Result:
        raise TimeoutError("the kind's own")


def test_a_run_is_cut_at_its_deadline_and_the_default_message_names_the_timeout() -> None:
    async def go() -> tuple[Result, float, float, float]:
        probe = Slow(Spec())
        loop = asyncio.get_running_loop()
        before = loop.time()
        result, latency, _ = await run_once(probe, Spec())
        return result, latency, probe.given - before, loop.time() - before

    result, latency, given, elapsed = asyncio.run(go())
    assert (result.up, result.reason) == (False, "timeout")
    assert result.message == "no result within 200ms"
    assert 0.19 <= given <= 0.3  # the deadline handed to the kind is start + timeout
    assert 0.19 <= latency < 1.0 and elapsed < 1.0


def test_a_kind_says_what_a_cut_run_saw() -> None:
    result, _, _ = asyncio.run(run_once(Telling(Spec()), Spec()))
    assert (result.reason, result.code, result.message) == ("timeout", 7, "saw nothing in 0.2s")


def test_a_timeout_error_the_kind_raises_itself_is_an_error_and_is_reported() -> None:
    seen: list[Exception] = []
    t0 = time.monotonic()
    result, _, _ = asyncio.run(run_once(OwnTimeout(Spec(timeout=5)), Spec(timeout=5), seen.append))
    assert time.monotonic() - t0 < 1  # not waited out
    assert (result.reason, result.message) == ("error", "TimeoutError: the kind's own")
    assert [str(e) for e in seen] == ["the kind's own"]
