"""Shared pieces of the benchmarks: run the exporter, sample its CPU/RSS, read /metrics."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model or platform.processor()}, Python {platform.python_version()}"


@dataclass
class Exporter:
    config: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    ready_timeout: float = 60.0  # loading tens of thousands of probes takes a while

    def __enter__(self) -> Exporter:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "serve", f"--config.file={self.config}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warning",
             "--config.watch-interval=0"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("exporter exited during start") from None
                time.sleep(0.2)
        raise SystemExit(f"exporter did not become ready in {self.ready_timeout:g}s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def scrape(self) -> tuple[float, str]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as resp:
            body = resp.read()
        return time.perf_counter() - t0, body.decode()


def own_series(text: str, prefix: str) -> dict[str, float]:
    """Samples of unlabelled or simply labelled own series starting with ``prefix``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def sum_series(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rpartition(" ")[2])
    return total


def lag_quantile(before: str, after: str, q: float) -> float:
    """The q-quantile of scheduler lag observed between two scrapes (histogram_quantile)."""
    def buckets(text: str) -> list[tuple[float, float]]:
        out = []
        for name, value in own_series(text, "probewatch_scheduler_lag_seconds_bucket").items():
            le = name.split('le="')[1].split('"')[0]
            out.append((float("inf") if le == "+Inf" else float(le), value))
        return sorted(out)

    b0, b1 = dict(buckets(before)), buckets(after)
    delta = [(le, count - b0.get(le, 0.0)) for le, count in b1]
    total = delta[-1][1]
    if total <= 0:
        return 0.0
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in delta:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


def save(name: str, figures: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path


def report(rows: list[tuple[str, str, str, bool | None]]) -> None:
    width = max(len(r[0]) for r in rows)
    for label, value, goal, ok in rows:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{label:<{width}}  {value:>14}   goal {goal:<14} {verdict}")


# --- shared by the side-by-side benches (bench_tcp.py cpu) ----------------------------

BLACKBOX = "prometheus-blackbox-exporter"

# Listeners that accept and close with no per-connection Python objects (asyncio's
# start_server makes a transport, a protocol and a task per connection), so the
# peer of every contender costs the shared machine as little as it can.
# The listeners every tcp bench probes: ``count`` loopback ports in a process of
# their own, a tight accept-and-close loop on epoll, so that they cost the
# machine as little as they can.
ACCEPT_LISTENERS = """
import select, socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.setblocking(False)
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
poll = select.epoll()
by_fd = {s.fileno(): s for s in socks}
for fd in by_fd:
    poll.register(fd, select.EPOLLIN)
while True:
    for fd, _ in poll.poll():
        for _ in range(256):
            try:
                conn, _ = by_fd[fd].accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            conn.close()
"""


class AcceptListeners:
    """``count`` loopback listeners in their own process that accept and close; ``ports``."""

    def __init__(self, count: int = 50) -> None:
        self.count = count
        self.ports: list[int] = []
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> AcceptListeners:
        self.proc = subprocess.Popen([sys.executable, "-c", ACCEPT_LISTENERS, str(self.count)],
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.ports = [int(p) for p in self.proc.stdout.readline().split()]
        if len(self.ports) != self.count:
            raise SystemExit("the listeners did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def tcp_config(path: Path, probes: int, period: float, ports: list[int], extra: str = "") -> Path:
    """A config of ``probes`` plain tcp probes spread over ``ports`` (timeout half the period)."""
    lines = [f"defaults: {{period: {period:g}s, timeout: {period / 2:g}s}}", "probes:"]
    lines += [f"  - {{name: tcp-{i:06d}, kind: tcp, target: '127.0.0.1:{ports[i % len(ports)]}'{extra}}}"
              for i in range(probes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def stop(proc: subprocess.Popen[Any] | None) -> None:
    """Terminate ``proc`` (by its PID) and reap it; kill it after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_blackbox() -> str:
    """blackbox_exporter's binary; installed with apt-get when missing and we are root."""
    import shutil

    path = shutil.which(BLACKBOX) or shutil.which("blackbox_exporter")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {BLACKBOX} with apt-get ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", BLACKBOX],
                       check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        path = shutil.which(BLACKBOX)
    if not path:
        raise SystemExit(f"{BLACKBOX} not found: install it with `apt-get install {BLACKBOX}` "
                         "(Debian/Ubuntu), or put blackbox_exporter on PATH")
    return path


def blackbox_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = out.stdout or out.stderr
    return text.splitlines()[0].strip() if text else "?"


def wait_http(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited during start") from None
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer within {timeout:g}s")


def timed_get(url: str, gzip: bool = False, timeout: float = 30.0) -> tuple[float, int, bytes]:
    """GET ``url``: (seconds to the last byte, bytes on the wire, body decompressed)."""
    import gzip as gzip_module

    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        raw = resp.read()
        encoding = resp.headers.get("Content-Encoding", "")
    seconds = time.perf_counter() - t0
    return seconds, len(raw), gzip_module.decompress(raw) if encoding == "gzip" else raw


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
