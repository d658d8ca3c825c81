"""One run of a probe, the only way runs are made: the scheduler, ``probewatch
probe`` and the tests all call ``run_once``.

The run's deadline is its timeout counted from when the run really starts; at
the deadline the run is cancelled and the kind's ``timed_out`` gives the
result.  A kind that raises gives a failed run with reason error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .base import Kind, Result


async def run_once(probe: Kind, spec: Any,
                   on_raise: Callable[[Exception], None] | None = None) -> tuple[Result, float, float]:
    """Run ``probe`` once within ``spec.timeout``; return (result, latency seconds, start Unix time).

    ``on_raise`` is told of an exception the kind raised (the scheduler logs it,
    throttled); the run is then a failure with reason error.
    """
    loop = asyncio.get_running_loop()
    started = time.time()
    t0 = time.perf_counter()
    deadline = loop.time() + spec.timeout
    cut = asyncio.timeout_at(deadline)
    try:
        async with cut:
            result = await probe.run(deadline)
        if not isinstance(result, Result):
            raise TypeError(f"run() returned {type(result).__name__}, not Result")
    except TimeoutError as exc:
        # A TimeoutError the kind raised itself is a failure like any other exception.
        result = probe.timed_out(spec.timeout) if cut.expired() else _raised(exc, on_raise)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        result = _raised(exc, on_raise)
    return result, time.perf_counter() - t0, started


def _raised(exc: Exception, on_raise: Callable[[Exception], None] | None) -> Result:
    if on_raise is not None:
        on_raise(exc)
    return Result.fail("error", f"{type(exc).__name__}: {exc}")
