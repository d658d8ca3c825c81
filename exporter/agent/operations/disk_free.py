"""Disk space free for unprivileged users on the file systems of the given absolute paths.

Fields disk_free_bytes:PATH, one per path, e.g. {disk_free: [/, /var]}.
"""

from __future__ import annotations

import os

ARGUMENTS = "PATH..."
MAX_PATHS = 16


def collect(args: list[str]) -> dict[str, float]:
    if not args:
        raise ValueError("name at least one absolute path, e.g. {disk_free: [/]}")
    if len(args) > MAX_PATHS:
        raise ValueError(f"at most {MAX_PATHS} paths per request")
    out: dict[str, float] = {}
    for path in args:
        if not os.path.isabs(path):
            raise ValueError(f"path {path!r} is not absolute")
        st = os.statvfs(path)
        out[f"disk_free_bytes:{path}"] = float(st.f_bavail * st.f_frsize)
    return out
