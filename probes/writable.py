"""Waiting for many sockets to become writable, at the cost of one loop reader.

A plain tcp probe waits for its non-blocking connect to finish: the socket
turns writable.  ``loop.add_writer`` pays, per socket, a Handle, a
SelectorKey, the transport check and two epoll_ctl calls through Python's
selectors module, then a loop callback per socket.  ``Writable`` keeps its own
epoll set instead, registered once with the loop as a reader: a socket joins it
with one C call (EPOLLOUT | EPOLLONESHOT), and one loop callback takes every
socket that is ready in a single ``poll``.  Closing a socket drops it from the
set (the kernel does that), so nothing needs removing after the event.

Linux only (select.epoll); ``for_loop`` returns None elsewhere and callers use
``loop.add_writer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import weakref
from collections.abc import Callable

_EVENTS = getattr(select, "EPOLLOUT", 0) | getattr(select, "EPOLLONESHOT", 0)
_BATCH = 1024  # events taken per poll call

_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Writable] = weakref.WeakKeyDictionary()


class Writable:
    """One epoll set for one event loop: ``add(fd, callback)``, ``discard(fd)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()
        self._waiting: dict[int, Callable[[], None]] = {}
        self._loop = loop
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, from the loop, when ``fd`` is writable (or has failed)."""
        self._epoll.register(fd, _EVENTS)
        self._waiting[fd] = callback

    def discard(self, fd: int) -> None:
        """Stop waiting for ``fd`` (before closing it, or instead of its callback)."""
        if self._waiting.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # already closed: the kernel dropped it
                self._epoll.unregister(fd)

    def _ready(self) -> None:
        waiting = self._waiting
        while True:
            events = self._epoll.poll(0, _BATCH)
            # Every callback is taken before any runs: a callback that closes its
            # socket and opens another may get the same fd number back.
            callbacks = [waiting.pop(fd, None) for fd, _ in events]
            for callback in callbacks:
                if callback is not None:
                    callback()
            if len(events) < _BATCH:
                return

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._waiting.clear()


def for_loop(loop: asyncio.AbstractEventLoop) -> Writable | None:
    """The loop's ``Writable`` (made on first use), or None where epoll is missing."""
    found = _by_loop.get(loop)
    if found is None:
        if not hasattr(select, "epoll"):
            return None
        found = _by_loop[loop] = Writable(loop)
    return found
