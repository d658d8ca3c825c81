"""The ``probewatch import`` subcommand: arguments, and writing what was translated."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import ConfigError, parse_config
from . import ImportFailed, Translation, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", metavar="FILE", default="",
                       help="write the probewatch config to FILE instead of standard output")

    moniteur = tools.add_parser("moniteur", help="Moniteur's tests.cfg and notifier.cfg")
    moniteur.add_argument("tests", metavar="TESTS.cfg")
    moniteur.add_argument("notifier", metavar="NOTIFIER.cfg", nargs="?", default="")
    output(moniteur)
    moniteur.add_argument("--alertmanager.file", dest="alertmanager_file", metavar="FILE", default="",
                          help="where notifier.cfg's Alertmanager config goes; default alertmanager.yml "
                               "beside -o FILE (or in the current folder); the SMTP password goes "
                               "to smtp-password beside it")
    cmdchk = tools.add_parser("cmdchk", help="Cmdchk's JSON config files, merged in order")
    cmdchk.add_argument("files", metavar="FILE.json", nargs="+")
    output(cmdchk)
    megaphone = tools.add_parser("megaphone", help="a running Megaphone's checks (/check/list)")
    megaphone.add_argument("url", metavar="URL", help="Megaphone's address, e.g. http://127.0.0.1:18001")
    output(megaphone)
    megaphone.add_argument("--register", metavar="PROBEWATCH_URL", default="",
                           help="add the checks to this running probewatch (PUT /check/add) "
                                "instead of writing a config")


def translate(args: argparse.Namespace) -> Translation:
    if args.tool == "moniteur":
        from .moniteur import translate_notifier, translate_tests

        t, aggregates = translate_tests(args.tests)
        if args.notifier:
            folder = os.path.dirname(args.output) if args.output else "."
            am_path = args.alertmanager_file or os.path.join(folder, "alertmanager.yml")
            am_text = translate_notifier(args.notifier, aggregates, t, "smtp-password")
            if "smtp-password" in t.files:
                t.files[os.path.join(os.path.dirname(am_path), "smtp-password")] = t.files.pop("smtp-password")
            t.files[am_path] = (am_text, 0o644)
        elif aggregates:
            t.note("aggregate: without NOTIFIER.cfg there is no Alertmanager route for it")
        return t
    if args.tool == "cmdchk":
        from .cmdchk import translate as cmdchk

        return cmdchk(args.files)
    from .megaphone import translate as megaphone

    return megaphone(args.url)


def run(args: argparse.Namespace) -> int:
    try:
        t = translate(args)
    except ImportFailed as exc:
        print(f"probewatch import {args.tool}: {exc}", file=sys.stderr)
        return 2
    if args.tool == "megaphone" and args.register:
        from .megaphone import register

        failed = register(t, args.register)
        for line in failed:
            print(f"not registered: {line}", file=sys.stderr)
        print(f"{len(t.probes) - len(failed)} of {len(t.probes)} checks registered at {args.register}",
              file=sys.stderr)
        return 1 if failed else 0
    text = render(t)
    target = args.output or "<stdout>"
    try:  # what comes out must pass `probewatch check` (the environment aside)
        parse_config(text, args.output or "probewatch.yml", check_env=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"probewatch import {args.tool}: translation is not valid: {problem}", file=sys.stderr)
        return 1
    for note in t.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        for path, (content, mode) in t.files.items():
            write(path, content, mode)
            print(f"wrote {path}", file=sys.stderr)
        if args.output:
            write(args.output, text, 0o644)
            print(f"wrote {args.output}: {len(t.probes)} probes", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except OSError as exc:
        print(f"probewatch import {args.tool}: {target}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if t.flags:
        print("run it with: probewatch serve --config.file=" + (args.output or "FILE") + " "
              + " ".join(t.flags), file=sys.stderr)
    return 0


def write(path: str, content: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(path, mode)
