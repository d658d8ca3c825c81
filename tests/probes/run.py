"""Run a probe from config text exactly as the exporter would (kind class + probes.runner)."""

from __future__ import annotations

import asyncio

from exporter.config import parse_config
from probes import runner
from probes.base import Kind, Result
from probes.registry import get_kind


def run_once(config_text: str, name: str | None = None) -> tuple[Result, float]:
    config = parse_config(config_text, "test.yml")
    spec = config.probes[0] if name is None else config.by_name()[name]

    async def go() -> tuple[Result, float]:
        result, latency, _ = await runner.run_once(get_kind(spec.kind)(spec), spec)
        return result, latency

    return asyncio.run(go())


async def once(probe: Kind) -> Result:
    """One run of ``probe`` as the scheduler makes it (cut at its deadline, timed_out asked)."""
    result, _, _ = await runner.run_once(probe, probe.spec)
    return result
