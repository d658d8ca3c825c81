"""probes.writable: one epoll set for many connects, against real loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import socket

from probes import writable


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    err = sock.connect_ex(("127.0.0.1", port))
    assert err in (0, errno.EINPROGRESS), err
    return sock


def test_every_waiting_socket_is_called_back_once_and_a_discarded_one_never() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]  # bound, never listening: refused

    async def main() -> tuple[dict[int, int], list[int], int]:
        loop = asyncio.get_running_loop()
        waiter = writable.for_loop(loop)
        assert waiter is not None and writable.for_loop(loop) is waiter  # one per loop
        calls: dict[int, int] = {}
        errors: list[int] = []
        socks = [_connect(port) for _ in range(300)] + [_connect(closed_port)]
        discarded = socks.pop(0)
        everyone = asyncio.Event()

        def called(i: int, sock: socket.socket) -> None:
            calls[i] = calls.get(i, 0) + 1
            errors.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            sock.close()
            if i < 50:
                # The new socket takes the number just freed, maybe one still to come
                # in this batch: its callback must be its own, and only once.
                again = _connect(port)
                waiter.add(again.fileno(), lambda: called(1000 + i, again))
            if len(calls) == len(socks) + 50:
                everyone.set()

        for i, sock in enumerate(socks):
            waiter.add(sock.fileno(), lambda i=i, sock=sock: called(i, sock))
        waiter.add(discarded.fileno(), lambda: calls.__setitem__(-1, 1))
        waiter.discard(discarded.fileno())
        discarded.close()
        await asyncio.wait_for(everyone.wait(), 10)
        await asyncio.sleep(0.1)  # a second callback would land here
        waiter.close()
        return calls, errors, len(socks)

    try:
        calls, errors, count = asyncio.run(main())
    finally:
        listener.close()
    assert -1 not in calls
    assert sorted(calls) == [*range(count), *range(1000, 1050)]
    assert set(calls.values()) == {1}
    assert errors.count(errno.ECONNREFUSED) == 1  # the closed port, told as an error
    assert errors.count(0) == count + 50 - 1
