"""The private channel between the parent and one worker: pickled messages on a socketpair.

Each message is one ``multiprocessing.connection`` frame (a length, then a
pickle); a request gets exactly one reply.  Only the two processes hold the
pair's ends, so nothing else can talk to a worker.
"""

from __future__ import annotations

import pickle
import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

# How long the parent waits for a worker's reply before it counts the worker as
# hung (it is then killed and restarted).  An apply of 50,000 specs on a busy
# machine takes seconds; a scrape's reply, milliseconds to a second.
REPLY_TIMEOUT = 60.0


class WorkerGone(Exception):
    """The worker's end is closed or it did not answer in time."""


def pair() -> tuple[socket.socket, socket.socket]:
    """(parent's end, worker's end); the worker's end is made inheritable for pass_fds."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.set_inheritable(True)
    return parent, child


class Channel:
    """One end of the pair; ``call`` is a request and its reply, one caller at a time."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd)
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self, timeout: float | None = None) -> Any:
        if timeout is not None and not self.conn.poll(timeout):
            raise WorkerGone(f"no reply within {timeout:g}s")
        return pickle.loads(self.conn.recv_bytes())

    def call(self, message: Any, timeout: float = REPLY_TIMEOUT) -> Any:
        with self._lock:
            try:
                self.send(message)
                reply = self.receive(timeout)
            except (OSError, EOFError) as exc:
                raise WorkerGone(str(exc) or type(exc).__name__) from None
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise WorkerGone(f"the worker failed: {reply[1]}")
        return reply

    def close(self) -> None:
        self.conn.close()
