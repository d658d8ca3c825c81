"""The probewatch command: serve, check, probe, kinds, import, agent."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from probes.base import Result
from probes.netaddr import join_host_port
from probes.redact import mask_log_records
from probes.registry import KindUnavailable, get_kind, kind_names, loaded_kinds
from probes.runner import run_once

from . import __version__, logs
from . import config as config_module
from .agent import add_arguments as agent_arguments
from .config import ConfigError, load_config
from .durations import parse_duration
from .exposition import samples_of
from .option_listing import describe_options
from .options import did_you_mean
from .probe_state import ProbeState
from .routing import Router
from .service import Exporter
from .sharding import Shard, ordinal_from_hostname, parse_shard
from .status import attach as attach_status
from .status.store import api_problems
from .web import DEFAULT_MAX_CONNECTIONS, WebServer, parse_listen_address
from .web_connections import connection_cap, raise_open_files_limit
from .webconfig import WebConfig, load_web_config
from .workers import parse_workers

DEFAULT_PORT = 9637
DEFAULT_CONFIG = "probewatch.yml"

log = logging.getLogger("probewatch")


def _duration_arg(text: str) -> float:
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard_arg(text: str) -> str:
    if text.startswith("/"):
        return text
    try:
        parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _listen_arg(text: str) -> tuple[str, int]:
    if not text.isascii():  # int() takes fullwidth digits; an address must not
        raise argparse.ArgumentTypeError(f"{text!r}: write the address in ASCII (digits 0-9)")
    try:
        return parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def loopback_address(host: str, port: int) -> str:
    """How a probe on this machine reaches a server listening on ``host:port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return join_host_port(host, port)


def _positive_int(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _workers_arg(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probewatch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"probewatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG,
                       help=f"probe config (YAML); default {DEFAULT_CONFIG}")

    def log_flags(p: argparse.ArgumentParser) -> None:
        logs.add_flags(p)

    def web_config_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--web.config.file", dest="web_config_file", default="", metavar="FILE",
                       help="TLS, basic auth and headers for every endpoint (exporter-toolkit's format)")

    serve = sub.add_parser("serve", help="run the probes and serve /metrics")
    config_flag(serve)
    serve.add_argument("--web.listen-address", dest="listen", type=_listen_arg,
                       default=("", DEFAULT_PORT), metavar="HOST:PORT",
                       help=f"where to serve /metrics; default :{DEFAULT_PORT}")
    serve.add_argument("--config.watch-interval", dest="watch_interval", type=_duration_arg,
                       default=5.0, metavar="DURATION",
                       help="reload when the config file changes, checked this often; 0 turns it off")
    serve.add_argument("--shard", type=_shard_arg, default="0/1", metavar="i/N",
                       help="run only probes whose name hashes to shard i of N")
    serve.add_argument("--shard-from-hostname", action="store_true",
                       help="take i from the trailing ordinal of the host name (StatefulSet pods); "
                            "N from --shard=/N or PROBEWATCH_SHARDS")
    web_config_flag(serve)
    serve.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                       help="let POST/PUT /-/reload reload the config (off: 403; SIGHUP always works)")
    serve.add_argument("--web.max-connections", dest="max_connections", type=_positive_int,
                       default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                       help=f"open HTTP connections at most (default {DEFAULT_MAX_CONNECTIONS}, "
                            "and never more than half the open files limit)")
    serve.add_argument("--workers", type=_workers_arg, default=1, metavar="N|auto",
                       help="run the probes in N worker processes behind this one /metrics (auto: one "
                            "per CPU); default 1, everything in this process")
    log_flags(serve)

    check = sub.add_parser("check", help="check a config file; exit 0 when valid, 2 when not")
    config_flag(check)
    web_config_flag(check)

    probe = sub.add_parser("probe", help="run one probe once, now, and print what it saw")
    probe.add_argument("name", help="the probe's name in the config")
    config_flag(probe)
    log_flags(probe)

    kinds = sub.add_parser("kinds", help="list probe kinds with their options")
    kinds.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (default: every kind)")

    imports = sub.add_parser("import", help="translate a Moniteur, Cmdchk or Megaphone config")
    from .importers.command import add_arguments as import_arguments

    import_arguments(imports)

    agent = sub.add_parser("agent", help="answer signed udp probes with local diagnostics")
    agent_arguments(agent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the guard: `probewatch kinds | head` closes the pipe early
    except BrokenPipeError:
        # The reader went away (head, less quitting): stop quietly, as tools killed by SIGPIPE do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


def _config_unreadable(args: argparse.Namespace) -> bool:
    """Say so, with the flag to use, when the config file cannot be opened."""
    path = args.config_file
    try:
        with open(path, "rb"):
            return False
    except OSError as exc:
        why = exc.strerror or str(exc)
    if path == DEFAULT_CONFIG and not os.path.exists(path):
        print(f"probewatch {args.command}: no config file: there is no {DEFAULT_CONFIG} in {os.getcwd()}; "
              "name one with --config.file=FILE", file=sys.stderr)
    else:
        print(f"probewatch {args.command}: cannot read --config.file={path}: {why}", file=sys.stderr)
    return True


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mask_log_records()  # no secret in any log line (probes/redact.py)
    # `check --web.config.file=W` alone checks only the web config (cmd_check).
    web_only = (args.command == "check" and args.web_config_file and args.config_file == DEFAULT_CONFIG
                and not os.path.exists(DEFAULT_CONFIG))
    if args.command in ("serve", "check", "probe") and not web_only and _config_unreadable(args):
        return 2
    if args.command in ("serve", "probe"):
        from .init import become_init

        become_init()  # as PID 1: reap orphans in a parent process (exporter/init.py)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "probe":
            return cmd_probe(args)
        if args.command == "kinds":
            return cmd_kinds(args.kinds)
        if args.command == "import":
            from .importers.command import run as import_run

            return import_run(args)
        if args.command == "agent":
            from .agent import run as agent_run

            return int(agent_run(args))
    except KeyboardInterrupt:
        return 130
    return 2


def _report(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
    return 2


def cmd_check(args: argparse.Namespace) -> int:
    if args.web_config_file:
        try:
            load_web_config(args.web_config_file)
        except ConfigError as exc:
            return _report(exc)
        print(f"{args.web_config_file}: OK")
        if args.config_file == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
            return 0  # only the web config was asked about
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        return _report(exc)
    problems, warnings = api_problems(config)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        return _report(ConfigError(problems))
    active = sum(1 for p in config.probes if p.active)
    print(f"{args.config_file}: OK, {len(config.probes)} probes ({active} active)")
    return 0


def _resolve_shard(args: argparse.Namespace) -> Shard:
    text = args.shard
    if args.shard_from_hostname:
        count = text[1:] if text.startswith("/") else os.environ.get("PROBEWATCH_SHARDS", "")
        if not count and "/" in text:
            count = text.split("/")[1]
        index = ordinal_from_hostname(os.environ.get("HOSTNAME") or socket.gethostname())
        text = f"{index}/{count or 1}"
    elif text.startswith("/"):
        text = "0" + text
    return parse_shard(text)


def cmd_serve(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_file or None, args.log_format)
    try:
        shard = _resolve_shard(args)
    except ValueError as exc:
        print(f"probewatch: --shard: {exc}", file=sys.stderr)
        return 2
    exporter = _exporter(args, shard)
    router = Router()
    exporter.add_routes(router)
    attach_status(exporter, router)
    # Signals first: once /-/ready answers, a SIGHUP must reload, not kill.
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=exporter.reload).start())
    web_config = WebConfig()
    if args.web_config_file:
        try:
            web_config = load_web_config(args.web_config_file)
        except ConfigError as exc:
            return _report(exc)
    exporter.lifecycle = args.enable_lifecycle
    open_files = raise_open_files_limit()
    max_connections = connection_cap(args.max_connections, open_files)
    if max_connections < args.max_connections:
        log.warning("--web.max-connections lowered to half the open files limit",
                    extra={"max_connections": max_connections, "open_files": open_files})
    host, port = args.listen
    try:
        server = WebServer(router, host, port, web_config, max_connections)
    except OSError as exc:
        print(f"probewatch: --web.listen-address {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    config_module.LISTEN["address"] = loopback_address(host, server.port)
    try:
        exporter.start()
    except ConfigError as exc:
        server.stop()
        return _report(exc)
    server.start()
    if args.watch_interval > 0:
        exporter.watch(args.watch_interval)
    log.info("probewatch started", extra={"address": f"{server.scheme}://{host or '0.0.0.0'}:{server.port}",
                                          "probes": exporter.probe_count(), "workers": args.workers,
                                          "max_connections": max_connections, "open_files": open_files,
                                          "shard": str(shard), "version": __version__})
    while not done.wait(1.0):
        pass
    log.info("probewatch stopping")
    server.stop()
    exporter.stop()
    return 0


def _log_raised(exc: Exception) -> None:
    log.error("probe raised", extra={"error": f"{type(exc).__name__}: {exc}"})


def _exporter(args: argparse.Namespace, shard: Shard) -> Exporter:
    """One process, or with --workers N >= 2 the parent of N worker processes."""
    if args.workers < 2:
        return Exporter(args.config_file, shard)
    from .workers.parent import PoolExporter

    log_args = [f"--log.level={args.log_level}", f"--log.format={args.log_format}"]
    if args.log_file:
        log_args.append(f"--log.file={args.log_file}")
    return PoolExporter(args.config_file, shard, args.workers, log_args)


def cmd_probe(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_file or None, args.log_format)
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        return _report(exc)
    spec = config.by_name().get(args.name)
    if spec is None:
        names = ", ".join(sorted(config.by_name())) or "none"
        print(f"probewatch: no probe named {args.name!r} in {args.config_file} (probes: {names})",
              file=sys.stderr)
        return 2
    spec_active = spec if spec.active else dataclasses.replace(spec, active=True)

    async def once() -> tuple[Result, float, float]:
        probe = get_kind(spec.kind)(spec_active)
        return await run_once(probe, spec_active, _log_raised)

    try:
        result, latency, started = asyncio.run(once())
    finally:
        for kind in loaded_kinds():
            kind.shutdown()
    state = ProbeState(spec_active)
    state.record(result, latency, started)
    last = state.last
    assert last is not None
    print(f"probe:   {spec.name} ({spec.kind} {spec.shown_target})" + ("" if spec.active else " [inactive]"))
    print(f"result:  {'up' if last.up else 'down'}")
    print(f"code:    {last.code}")
    print(f"latency: {latency:.6f}s")
    if not last.up:
        print(f"reason:  {last.reason}")
    print(f"message: {logs.escape(last.message)}")  # a peer's text must not drive the terminal
    print("samples:")
    for line in samples_of(state):
        print(f"  {logs.escape(line)}")
    return 0 if last.up else 1


def cmd_kinds(wanted: Sequence[str] = ()) -> int:
    names = kind_names()
    unknown = [k for k in wanted if k not in names]
    if unknown:
        for name in unknown:
            close = did_you_mean(name, names)
            hint = f" (did you mean {close}?)" if close else ""
            print(f"probewatch kinds: unknown kind {name!r}{hint}; kinds: {', '.join(names)}",
                  file=sys.stderr)
        return 2
    for name in wanted or names:
        print(f"{name}")
        try:
            cls = get_kind(name)
        except KindUnavailable as exc:
            print(f"    unavailable: {exc}\n")
            continue
        doc = inspect.cleandoc(cls.__doc__ or "").splitlines()
        for line in doc:
            print(f"    {line}".rstrip())
        rows = describe_options(cls.Options)
        if rows:
            print(f"    options ({name}: block):")
            for row in rows:
                default = "required" if row.default == "required" else f"default {row.default}"
                print(f"      {row.key}: {row.type}; {default}")
                if row.doc:
                    print(f"          {row.doc}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
