"""Helpers shared by the test suite: ports, required tools, processes, polling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

T = TypeVar("T")


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out (bind to port 0), released for the caller."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def missing(what: str) -> None:
    """A needed component is absent: fail under CI, skip elsewhere, naming it."""
    message = f"{what} is not available on this machine"
    if IN_CI:
        pytest.fail(message + " (CI must have it: .ci/run installs it)")
    pytest.skip(message)


def no_sip_reason() -> str | None:
    """Why this install has no sip kind on purpose, or None.

    `make` installs without the sip extra when PROBEWATCH_NO_SIP is set or no
    pjsua2-python wheel fits this Python and machine, and records why in the venv
    (probewatch-no-sip).  Only then may the sip tests skip under CI.
    """
    if os.environ.get("PROBEWATCH_NO_SIP", "") not in ("", "0"):
        return "PROBEWATCH_NO_SIP is set"
    marker = Path(sys.prefix) / "probewatch-no-sip"
    if not marker.exists():
        return None
    return marker.read_text().strip() or "installed without the sip extra"


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the program {name!r}")
    return path  # type: ignore[return-value]


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextmanager
def process(argv: list[str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    """Start a process in its own group; stop it (TERM, then KILL) by its PID."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    proc = subprocess.Popen(argv, start_new_session=True, **kw)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for its reaper (Linux: /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def probewatch_argv(*args: str) -> list[str]:
    """Run the CLI from this checkout with the interpreter running the tests."""
    return [sys.executable, "-m", "exporter.cli", *args]


def self_signed_certificate(directory: Path, days: float = 1, common_name: str = "probewatch test",
                            prefix: str = "") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 valid ``days``, written as PEM: (cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path
