"""Reading credential files (passwords, tokens, keys) safely.

A credential file is opened without blocking and must be a regular file of
at most ``MAX_SECRET_BYTES``: a FIFO would hang the run or the config check,
/dev/zero would eat memory, and neither is a credential.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SECRET_BYTES = 64 * 1024


def regular_file_problem(path: str, limit: int = MAX_SECRET_BYTES) -> str:
    """Why ``path`` is not a readable regular file of at most ``limit`` bytes (empty if it is)."""
    try:
        read_limited(path, limit, probe_only=True)
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror or exc}"
    return ""


def read_limited(path: str, limit: int = MAX_SECRET_BYTES, probe_only: bool = False) -> bytes:
    """The bytes of regular file ``path``; OSError naming why not (not regular, too large)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB")
        if probe_only:
            return b""
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB")
        return data
    finally:
        os.close(fd)


def read_secret_text(path: str) -> str:
    """A credential file's text (UTF-8); OSError or UnicodeDecodeError when it cannot serve."""
    return read_limited(path).decode("utf-8")
