"""Run a local command; up when it exits with an accepted code (Cmdchk's check_list).

The command runs without a shell unless ``shell: true`` is asked for, in its
own session and process group.  When the run ends (the command exited, the
run timed out or was cancelled) the whole group gets SIGTERM and, half a
second later, SIGKILL: background children do not outlive the run, and a
command that ignores SIGTERM or a child that keeps the output pipe open never
makes the run (or any other probe) wait.  Its
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
import threading
from dataclasses import dataclass, field
from typing import Any

from .base import Kind, Result

OUTPUT_LIMIT = 4096
# After the command exits: how long output still in the pipe may take to arrive.
DRAIN_SECONDS = 0.05
# Between SIGTERM and SIGKILL to the command's process group at the run's end.
KILL_AFTER = 0.5


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


class CommandProbe(Kind):
    __doc__ = __doc__
    Options = CommandOptions
    default_target = "localhost"

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.options: CommandOptions = spec.options
        self.argv = (["/bin/sh", "-c", self.options.argv[0]] if self.options.shell
                     else list(self.options.argv))
        self.env = {**os.environ, **self.options.env} if self.options.env else None

    async def run(self, deadline: float) -> Result:
        # The output pipe is ours, not asyncio's: asyncio's wait() may also wait
        # for its pipes to close, which a background child can delay forever.
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=self.options.cwd or None,
                env=self.env,
                start_new_session=True,  # its own session and process group: pgid == pid
            )
        except OSError as exc:
            os.close(read_fd)
            return Result.fail("error", f"cannot run {self.argv[0]}: {exc.strerror or exc}")
        finally:
            os.close(write_fd)
        output = _Output(read_fd)
        try:
            code = await proc.wait()
            # The command is done.  Output still in the pipe arrives at once; a
            # background child holding the pipe open does not make the run wait.
            await output.drained(DRAIN_SECONDS)
        finally:
            # Whether the run ended, timed out or was cancelled: the whole group
            # goes (children included), so nothing outlives the run.
            end_group(proc.pid)
            output.close()
        message = output.text()
        if code in self.options.accepted:
            return Result.ok(code, message)
        accepted = ", ".join(str(c) for c in sorted(self.options.accepted))
        return Result.fail("unexpected_code",
                           f"exit code {code} (accepted: {accepted})" + (f": {message}" if message else ""),
                           code=code)


class _Output:
    """The read end of the command's output pipe, read by the event loop.

    Keeps the first OUTPUT_LIMIT bytes and discards the rest, so a chatty
    command cannot fill the pipe and block.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kept = bytearray()
        self.loop = asyncio.get_running_loop()
        self.eof: asyncio.Future[None] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.loop.remove_reader(self.fd)
            if not self.eof.done():
                self.eof.set_result(None)
        elif len(self.kept) < OUTPUT_LIMIT:
            self.kept += chunk[: OUTPUT_LIMIT - len(self.kept)]

    async def drained(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.eof), seconds)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)

    def text(self) -> str:
        return bytes(self.kept).decode("utf-8", errors="replace").strip()


def end_group(pgid: int) -> None:
    """SIGTERM the process group now and SIGKILL it ``KILL_AFTER`` seconds later.

    Nothing waits for the group to go: the SIGKILL comes from a timer thread,
    started only when something of the group was still alive, so a command
    ignoring SIGTERM costs no probe any time.  The thread is not a daemon: an
    exiting ``probewatch probe`` still sends the SIGKILL.  The exited processes
    are reaped by asyncio's child watcher (the command) or by their parent or
    init (its children).
    """
    if not _signal_group(pgid, signal.SIGTERM):
        return
    threading.Timer(KILL_AFTER, _signal_group, (pgid, signal.SIGKILL)).start()


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal every process of the group; False when none is left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
