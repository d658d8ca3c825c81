"""One worker process: the Scheduler on its share of the probes, driven by the parent.

    python -m exporter.workers.child FD INDEX --log.level=... --log.format=... [--log.file=...]

FD is the worker's end of the socketpair.  Each request is (number, request)
and its reply (the same number, reply); requests (tuples, first item the
operation) and their replies:

- ``("apply", specs)`` -> ``("applied", count)``: replace the probe set;
- ``("scrape", gzip)`` -> ``("scrape", families, own)``: ``probe_families`` of
  every probe (with ``gzip``, each family's samples as one gzip member, made
  here so both cores compress and the parent only concatenates), and the
  worker's own telemetry families (prometheus_client Metric objects) that the
  parent merges (``merge.OWN``);
- ``("states", names or None)`` -> ``("states", [ProbeState, ...])``;
- ``("stop",)`` -> ``("stopped",)``, then the process ends.

End of file on FD (the parent is gone, even killed) stops the worker too.
SIGINT and SIGHUP are ignored: the parent has them (a terminal's Ctrl-C
reaches the whole group; the parent stops its workers itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import Any

from probes.redact import mask_log_records

from .. import logs
from ..exposition import probe_families
from ..scheduler import Scheduler
from ..telemetry import Telemetry
from . import trim_heap
from .channel import Channel
from .gzip import gzip_member
from .merge import OWN

log = logging.getLogger("probewatch.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probewatch-worker")
    parser.add_argument("fd", type=int)
    parser.add_argument("index", type=int)
    logs.add_flags(parser)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    mask_log_records()
    logs.setup(args.log_level, args.log_file or None, args.log_format)
    _tag_records(args.index)
    channel = Channel(args.fd)
    telemetry = Telemetry()
    scheduler = Scheduler(telemetry)
    scheduler.start()
    try:
        serve(channel, scheduler, telemetry)
    finally:
        scheduler.stop()
    return 0


def _tag_records(index: int) -> None:
    """Every log line of this process says worker=INDEX (the parent's lines have none)."""
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.worker = index
        return record

    logging.setLogRecordFactory(factory)


def serve(channel: Channel, scheduler: Scheduler, telemetry: Telemetry) -> None:
    while True:
        try:
            seq, message = channel.receive()
        except (EOFError, OSError):
            log.debug("the parent is gone; worker stopping")
            return
        op = message[0]
        try:
            reply = handle(op, message, scheduler, telemetry)
        except Exception as exc:  # the worker keeps serving; the parent sees the error
            log.exception("worker request failed", extra={"request": op})
            reply = ("error", f"{op}: {type(exc).__name__}: {exc}")
        try:
            channel.send((seq, reply))
        except OSError:
            return
        if op == "stop":
            return


def handle(op: str, message: tuple[Any, ...], scheduler: Scheduler, telemetry: Telemetry) -> tuple[Any, ...]:
    if op == "scrape":
        own = [fam for fam in telemetry.registry.collect() if fam.name in OWN]
        families = probe_families(scheduler.states())
        if message[1]:
            # One compress call per family: each call gives the GIL up and must take it
            # back from a busy event loop (up to a switch interval, 5 ms, each time).
            families = [dataclasses.replace(fam, samples=(gzip_member((b"".join(fam.samples),)),))
                        for fam in families]
        return ("scrape", families, own)
    if op == "apply":
        scheduler.apply(message[1])
        trim_heap()
        return ("applied", len(message[1]))
    if op == "states":
        names = message[1]
        if names is None:
            return ("states", scheduler.states())
        found = [scheduler.state(name) for name in names]
        return ("states", [s for s in found if s is not None])
    if op == "stop":
        return ("stopped",)
    return ("error", f"unknown request {op!r}")


if __name__ == "__main__":
    os.environ.setdefault("PROBEWATCH_INIT", "0")
    sys.exit(main())
