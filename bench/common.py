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
