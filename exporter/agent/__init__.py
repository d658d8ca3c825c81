"""``probewatch agent``: the UDP responder the udp probe asks for machine diagnostics.

The CLI calls ``add_arguments(parser)`` on the agent subcommand's parser and
``run(args)`` with the parsed flags; ``run`` returns the exit code (0 after a
clean stop by SIGTERM or SIGINT, 2 for bad flags or key file, 1 when the
address cannot be bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from exporter import logs
from exporter.durations import parse_duration
from exporter.web import parse_listen_address
from probes import signing

from .operations import discover, listing
from .server import AgentServer, format_address

DEFAULT_LISTEN = ":12345"
log = logging.getLogger("probewatch.agent")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Spelled like serve's flags; the first spellings (--listen, --key-file) stay as aliases.
    parser.add_argument(
        "--web.listen-address", "--listen", dest="listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
        help="UDP address to answer on; [ADDR]:PORT for IPv6, :PORT for every address"
             f" (default {DEFAULT_LISTEN})")
    parser.add_argument("--key.file", "--key-file", dest="key_file", metavar="FILE",
                        help="file holding the key shared with the probes (required)")
    parser.add_argument("--max-skew", type=_duration, default=30.0, metavar="DURATION",
                        help="refuse requests whose timestamp is further off than this"
                             " (default 30s)")
    parser.add_argument("--list-operations", action="store_true",
                        help="print the operations this agent offers, with their docs, and exit")
    logs.add_flags(parser)


def run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_file or None, args.log_format)
    operations = discover()
    if args.list_operations:
        sys.stdout.write(listing(operations))
        return 0
    if not args.key_file:
        print("probewatch agent: --key.file is required", file=sys.stderr)
        return 2
    try:
        key = signing.load_key(args.key_file)
        if not args.listen.isascii():  # int() takes fullwidth digits; an address must not
            raise ValueError(f"--listen {args.listen!r}: write the address in ASCII (digits 0-9)")
        host, port = parse_listen_address(args.listen)
    except (signing.KeyFileError, ValueError) as exc:
        print(f"probewatch agent: {exc}", file=sys.stderr)
        return 2
    if not signing.key_file_is_private(args.key_file):
        log.warning("key file is readable by group or others; chmod 600 it",
                    extra={"key_file": args.key_file})
    server = AgentServer(key, operations, max_skew=args.max_skew)
    try:
        return asyncio.run(_serve(server, host, port))
    except KeyboardInterrupt:
        return 0


async def _serve(server: AgentServer, host: str, port: int) -> int:
    try:
        address = await server.start(host, port)
    except OSError as exc:
        print(f"probewatch agent: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("agent listening", extra={
        "address": format_address(address), "operations": ",".join(server.operations),
        "max_skew": f"{server.max_skew:g}s"})
    await stop.wait()
    await server.close()
    log.info("agent stopped")
    return 0
