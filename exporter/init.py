"""A minimal init for when probewatch is PID 1 (a container started without one).

Commands' background children outlive them (``sh -c 'daemon &'``); orphans are
re-parented to PID 1, and PID 1 must reap them or they stay zombies for the
container's life.  Reaping them from inside the exporter would race asyncio's
child watcher (a ``waitpid(-1)`` can take a command's exit status before the
watcher sees it, and the run then reports 255), so probewatch does what tini
and ``docker run --init`` do: as PID 1 it forks, the child runs the exporter,
and the parent only forwards signals and reaps every process that ends,
leaving with the exporter's status.  Orphans go to the parent, never to the
exporter, whose own children's statuses stay its own.

``PROBEWATCH_INIT=1`` turns this on when probewatch is not PID 1 either (the
parent then makes itself the children's subreaper with
prctl(PR_SET_CHILD_SUBREAPER)); ``PROBEWATCH_INIT=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)


def wanted() -> bool:
    setting = os.environ.get("PROBEWATCH_INIT", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    return os.getpid() == 1 or setting in ("1", "true", "yes", "on")


def set_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux); True if it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_init() -> None:
    """When ``wanted()``: fork; return in the child (the exporter), never in the parent."""
    if not wanted():
        return
    if os.getpid() != 1:
        set_subreaper()
    child = os.fork()
    if child == 0:
        return
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: _forward(child, signum))
    # os._exit: the exporter's atexit hooks and buffers belong to the child, not to this init.
    os._exit(_reap_until(child))


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signum)


def _reap_until(child: int) -> int:
    """Reap every ended process; return the exit code of ``child`` once it ends."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            # Orphans still running die with the container; reap what already ended.
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
                128 + os.WTERMSIG(status)
