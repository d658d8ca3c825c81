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


class CredentialError(ValueError):
    """A credential file cannot serve; the message names the file and why (see ``read_credential``)."""


def read_credential_bytes(path: str, what: str = "", limit: int = MAX_SECRET_BYTES) -> bytes:
    """The bytes of credential file ``path``, surrounding line breaks removed.

    The one way a password, token or key file is read (http, json, sip, the
    status API's token, the udp kind's and the agent's key).  Every failure is a
    ``CredentialError`` of one shape: ``cannot read [WHAT ]'FILE': why`` when the
    file cannot be read, ``[WHAT ]'FILE' is empty`` when it holds nothing.
    """
    name = f"{what} {path!r}" if what else repr(path)
    try:
        data = read_limited(path, limit)
    except OSError as exc:
        raise CredentialError(f"cannot read {name}: {exc.strerror or exc}") from None
    data = data.strip(b"\r\n")  # a password may hold spaces; a trailing newline is never meant
    if not data.strip():
        raise CredentialError(f"{name} is empty")
    return data


def read_credential(path: str, what: str = "") -> str:
    """``read_credential_bytes`` as UTF-8 text (not UTF-8: ``[WHAT ]'FILE' is not UTF-8 text``)."""
    data = read_credential_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        name = f"{what} {path!r}" if what else repr(path)
        raise CredentialError(f"{name} is not UTF-8 text") from None


def credential_problem(path: str, what: str = "") -> str:
    """Why credential file ``path`` cannot serve (empty when it can, or when no path is set)."""
    if not path:
        return ""
    try:
        read_credential(path, what)
    except CredentialError as exc:
        return str(exc)
    return ""
