"""The private channel between the parent and one worker: pickled messages on a socketpair.

Each message is one ``multiprocessing.connection`` frame (a length, then a
pickle); a request gets exactly one reply.  Only the two processes hold the
pair's ends, so nothing else can talk to a worker.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

# How long a caller waits for a reply by default (see pool.py for each request's).
REPLY_TIMEOUT = 60.0


class WorkerGone(Exception):
    """The worker's end is closed, or it answered with an error."""


class WorkerSlow(Exception):
    """No reply within the timeout; the reply, if it comes, is dropped then."""


def pair() -> tuple[socket.socket, socket.socket]:
    """(parent's end, worker's end); the worker's end is made inheritable for pass_fds."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.set_inheritable(True)
    return parent, child


class Channel:
    """One end of the pair.  Requests carry a number and replies repeat it, so a reply
    that comes after its caller gave up is recognised and dropped; ``call`` is a
    request and its reply, one caller at a time."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd)
        self._lock = threading.Lock()
        self._seq = 0
        # Since when a request of this channel has waited in vain (None: every
        # request so far got its reply).
        self.silent_since: float | None = None

    def send(self, message: Any) -> None:
        self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> Any:
        return pickle.loads(self.conn.recv_bytes())

    def call(self, message: Any, timeout: float = REPLY_TIMEOUT) -> Any:
        began = time.monotonic()
        deadline = began + timeout
        with self._lock:
            self._seq += 1
            seq = self._seq
            try:
                self.send((seq, message))
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self.conn.poll(left):
                        self.silent_since = self.silent_since or began
                        raise WorkerSlow(f"no reply within {timeout:g}s")
                    got, reply = self.receive()
                    self.silent_since = None
                    if got == seq:
                        break
            except (OSError, EOFError) as exc:
                raise WorkerGone(str(exc) or type(exc).__name__) from None
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise WorkerGone(f"the worker failed: {reply[1]}")
        return reply

    def close(self) -> None:
        self.conn.close()
