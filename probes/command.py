"""Run a local command; up when it exits with an accepted code (Cmdchk's check_list).

The command runs without a shell unless ``shell: true`` is asked for, in its
own process group, so a timeout kills it together with its children.  Its
stdout and stderr, capped, become the message; the exit code is the return
code (a command killed by a signal reports minus the signal number).

    - name: db-check
      kind: command
      target: localhost
      command: {argv: [/usr/local/bin/check_db, --quick], ok_codes: [0, 1]}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from dataclasses import dataclass, field
from typing import Any

from .base import Result

OUTPUT_LIMIT = 4096


@dataclass
class CommandOptions:
    """``command:`` block.

    Options:
        argv (default required): the program and its arguments, run without a shell.
        shell: true: argv is one command line, run by /bin/sh -c.
        ok_codes (default [0]): accepted exit codes; empty means [0].
        env: variables added to the exporter's environment.
        cwd: working directory (empty: the exporter's).
    """

    argv: list[str] = field(default_factory=list)
    shell: bool = False
    ok_codes: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not self.argv:
            out.append(("argv", "is required: the program and its arguments, as a list"))
        elif self.shell and len(self.argv) != 1:
            out.append(("argv", "with shell: true, give one item: the command line for /bin/sh -c"))
        elif not self.shell and shutil.which(self.argv[0]) is None:
            out.append(("argv", f"program {self.argv[0]!r} not found or not executable"))
        if self.cwd and not os.path.isdir(self.cwd):
            out.append(("cwd", f"{self.cwd!r} is not a directory"))
        return out

    @property
    def accepted(self) -> frozenset[int]:
        return frozenset(self.ok_codes or [0])


class CommandProbe:
    __doc__ = __doc__
    Options = CommandOptions
    default_target = "localhost"

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.options: CommandOptions = spec.options
        self.argv = (["/bin/sh", "-c", self.options.argv[0]] if self.options.shell
                     else list(self.options.argv))
        self.env = {**os.environ, **self.options.env} if self.options.env else None

    async def run(self) -> Result:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.options.cwd or None,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            return Result.fail("error", f"cannot run {self.argv[0]}: {exc.strerror or exc}")
        try:
            output = await self._read_capped(proc)
            code = await proc.wait()
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            raise
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
        message = output.decode("utf-8", errors="replace").strip()
        if code in self.options.accepted:
            return Result.ok(code, message)
        accepted = ", ".join(str(c) for c in sorted(self.options.accepted))
        return Result.fail("unexpected_code",
                           f"exit code {code} (accepted: {accepted})" + (f": {message}" if message else ""),
                           code=code)

    async def _read_capped(self, proc: asyncio.subprocess.Process) -> bytes:
        assert proc.stdout is not None
        kept = b""
        while chunk := await proc.stdout.read(65536):
            if len(kept) < OUTPUT_LIMIT:
                kept += chunk[: OUTPUT_LIMIT - len(kept)]
        return kept


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
