"""Run a probe from config text exactly as the exporter would (kind class + scheduler timeout)."""

from __future__ import annotations

import asyncio

from exporter.config import parse_config
from exporter.scheduler import run_probe
from probes.base import Result
from probes.registry import get_kind


def run_once(config_text: str, name: str | None = None) -> tuple[Result, float]:
    config = parse_config(config_text, "test.yml")
    spec = config.probes[0] if name is None else config.by_name()[name]

    async def go() -> tuple[Result, float]:
        result, latency, _ = await run_probe(get_kind(spec.kind)(spec), spec)
        return result, latency

    return asyncio.run(go())
