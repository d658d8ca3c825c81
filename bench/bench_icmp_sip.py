"""1,000 icmp probes to loopback addresses and 100 sip OPTIONS probes, each at a 10s period.

    python bench/bench_icmp_sip.py [--icmp 1000] [--sip 100] [--period 10] [--duration 60]
                                   [--only icmp|sip]

Each phase runs `probewatch serve` as its own process on a generated config and
reads CPU and RSS (process_cpu_seconds_total, process_resident_memory_bytes)
and the scheduler lag histogram from its /metrics.  icmp probes ping
127.0.0.1 to 127.0.3.232 (needs CAP_NET_RAW or net.ipv4.ping_group_range);
sip probes send OPTIONS to one sipp (tests/probes/sip_scenarios/options-200.xml)
or, without sipp, to tests/probes/sip_peer.py.  Prints each figure beside the
tcp benchmark's (bench/results/tcp.json) and writes bench/results/icmp.json and
sip.json.  Bounded: each phase stops after warm-up + duration and stops what it
started.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RESULTS,
    ROOT,
    Exporter,
    lag_quantile,
    machine,
    own_series,
    report,
    save,
    stop,
    sum_series,
)

SCENARIO = ROOT / "tests" / "probes" / "sip_scenarios" / "options-200.xml"
PEER = ROOT / "tests" / "probes" / "sip_peer.py"


def loopback_addresses(count: int) -> list[str]:
    """127.0.0.1, 127.0.0.2 ... 127.0.3.232 for 1,000: consecutive, all on the loopback."""
    if count > 65534:
        raise SystemExit(f"{count} is more loopback addresses than 127.0.0.0/16 holds")
    return [f"127.0.{n // 256}.{n % 256}" for n in range(1, count + 1)]


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sip_peer() -> Iterator[tuple[str, str]]:
    """An OPTIONS answerer on loopback: (its URI, what it is)."""
    sipp = shutil.which("sipp")
    if sipp:
        port = udp_port()
        argv = [sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port),
                "-mp", str(udp_port()), "-cp", str(udp_port()), "-nostdin"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(0.5)
        what = "sipp"
    else:
        proc = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        assert proc.stdout is not None
        port = 0
        for _ in range(50):
            line = proc.stdout.readline()
            if line.startswith("listening "):
                port = int(line.split()[1])
                break
        what = "sip_peer.py (pjsua2)"
    try:
        if proc.poll() is not None or not port:
            raise SystemExit(f"the SIP peer ({what}) did not start")
        yield f"sip:127.0.0.1:{port}", what
    finally:
        stop(proc)


def measure(kind: str, config: Path, probes: int, args: argparse.Namespace) -> dict[str, object]:
    with Exporter(config) as exporter:
        warmup = args.period * 1.5
        print(f"{kind}: warming up {warmup:.0f}s with {probes} probes ...", flush=True)
        time.sleep(warmup)
        _, before = exporter.scrape()
        t0 = time.monotonic()
        deadline = t0 + args.duration
        rss: list[float] = []
        scrapes: list[float] = []
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            seconds, text = exporter.scrape()
            scrapes.append(seconds)
            rss.append(own_series(text, "process_resident_memory_bytes").get(
                "process_resident_memory_bytes", 0.0))
        _, after = exporter.scrape()
        elapsed = time.monotonic() - t0

    def delta(name: str) -> float:
        return sum_series(after, name) - sum_series(before, name)

    latencies = [float(line.rpartition(" ")[2]) for line in after.splitlines()
                 if line.startswith("probewatch_probe_latency_seconds{")]
    return {
        "machine": machine(), "kind": kind, "probes": probes, "period_s": args.period,
        "duration_s": round(elapsed),
        "runs_per_s": round(delta("probewatch_probe_runs_total") / elapsed, 1),
        "failed_runs": int(delta("probewatch_probe_failures_total")),
        "skipped_runs": int(delta("probewatch_probe_skipped_total")),
        "lag_p50_ms": round(lag_quantile(before, after, 0.50) * 1000, 2),
        "lag_p99_ms": round(lag_quantile(before, after, 0.99) * 1000, 2),
        "cpu_percent_of_one_core": round(delta("process_cpu_seconds_total") / elapsed * 100, 1),
        "rss_max_mib": round(max(rss) / 2**20, 1),
        "probe_latency_median_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "scrape_median_ms": round(statistics.median(scrapes) * 1000, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def show(figures: dict[str, object], tcp: dict[str, object]) -> None:
    kind = figures["kind"]
    print(f"\n{figures['probes']} {kind} probes, period {figures['period_s']}s, measured "
          f"{figures['duration_s']}s: {figures['runs_per_s']} runs/s, "
          f"{figures['failed_runs']} failed, {figures['skipped_runs']} skipped; "
          f"median probe latency {figures['probe_latency_median_ms']} ms")
    beside = f" (tcp, {tcp.get('probes', '?')} probes: " if tcp else ""

    def row(label: str, key: str, unit: str, goal: str, ok: bool) -> tuple[str, str, str, bool]:
        value = f"{figures[key]} {unit}"
        if tcp:
            value += f"{beside}{tcp.get(key, '?')} {unit})"
        return label, value, goal, ok

    lag = float(figures["lag_p99_ms"])  # type: ignore[arg-type]
    cpu = float(figures["cpu_percent_of_one_core"])  # type: ignore[arg-type]
    rss = float(figures["rss_max_mib"])  # type: ignore[arg-type]
    report([
        row("scheduler lag p99", "lag_p99_ms", "ms", "< 100 ms", lag < 100),
        row("exporter CPU", "cpu_percent_of_one_core", "%", "< 50 % of a core", cpu < 50),
        row("exporter RSS (max)", "rss_max_mib", "MiB", "< 200 MiB", rss < 200),
    ])
    print(f"results written to {save(str(kind), figures)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--icmp", type=int, default=1000)
    parser.add_argument("--sip", type=int, default=100)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--only", choices=("icmp", "sip"))
    args = parser.parse_args()
    tcp_path = RESULTS / "tcp.json"
    tcp = json.loads(tcp_path.read_text()) if tcp_path.exists() else {}
    defaults = f"defaults: {{period: {args.period:g}s, timeout: {args.period / 2:g}s}}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "icmp"):
            config = Path(tmp) / "icmp.yml"
            lines = [defaults, "probes:"] + [
                f"  - {{name: icmp-{i:04d}, kind: icmp, target: {address}}}"
                for i, address in enumerate(loopback_addresses(args.icmp))]
            config.write_text("\n".join(lines) + "\n")
            show(measure("icmp", config, args.icmp, args), tcp)
        if args.only in (None, "sip"):
            with sip_peer() as (uri, what):
                print(f"sip: OPTIONS to {what} at {uri}")
                config = Path(tmp) / "sip.yml"
                lines = [defaults, "probes:"] + [
                    f"  - {{name: sip-{i:03d}, kind: sip, target: '{uri}'}}" for i in range(args.sip)]
                config.write_text("\n".join(lines) + "\n")
                show(measure("sip", config, args.sip, args), tcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
