"""http probes: CPU per probe beside blackbox_exporter, and 5,000 probes with 20% silent targets.

    python bench/bench_http.py cpu   [--rate 200] [--seconds 20] [--rounds 3]
    python bench/bench_http.py scale [--probes 5000] [--silent 0.2] [--period 10] [--duration 60]

``cpu``: the same http GET on loopback (a new connection each time, a small 200
reply) done by probewatch's http kind and by blackbox_exporter's http_2xx
module, one after the other in each round, at the same rate.  probewatch runs
its probes on its own schedule; blackbox is driven as Prometheus drives it
(GET /probe?module=http_2xx&target=...).  CPU of each exporter process from
/proc/PID/stat, divided by the probes it completed; median of the rounds.
Goal: probewatch <= 0.5 x blackbox per probe.

``scale``: 5,000 http probes at a 10 s period, 20% of them to listeners that
accept and never answer.  Goals: 0 failed healthy runs, 0 skipped runs,
scheduler lag p99 < 50 ms, RSS < 300 MiB.

blackbox_exporter comes from the Debian package prometheus-blackbox-exporter
(installed with apt-get when missing and we may).  The target server runs in
its own process; every port is chosen at run time; everything started is
stopped by its PID.  Each mode is bounded (about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Exporter,
    cpu_seconds,
    find_blackbox,
    free_port,
    lag_quantile,
    machine,
    report,
    rss_bytes,
    save,
    sum_series,
    wait_http,
)

SERVER = """
import sys
from aiohttp import web
async def ok(request):
    return web.Response(text="ok from the bench target\\n")
app = web.Application()
app.router.add_get("/ok", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            backlog=4096)
"""


def cpu_pressure() -> float:
    """The kernel's CPU pressure ("some", avg60, %): how much other work competed with the bench."""
    try:
        with open("/proc/pressure/cpu") as fh:
            return float(fh.readline().split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        return -1.0


def runqueue_wait(pid: int) -> float:
    """Seconds the threads of ``pid`` spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return total / 1e9


@contextmanager
def started(argv: list[str], url: str, what: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_http(url, proc, what)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def target_server() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/ok"
    with started([sys.executable, "-c", SERVER, str(port)], url, "the target server"):
        yield url


def exporter_config(path: Path, targets: list[str], period: float, timeout: float) -> Path:
    lines = [f"defaults: {{period: {period:g}s, timeout: {timeout:g}s}}", "probes:"]
    lines += [f"  - {{name: http-{i:05d}, kind: http, target: '{t}'}}" for i, t in enumerate(targets)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- cpu ------------------------------------------------------------------------


def probewatch_round(tmp: Path, url: str, rate: float, seconds: float) -> float:
    """CPU seconds per completed probe of probewatch's http kind."""
    period = 2.0
    config = exporter_config(tmp / "cpu.yml", [url] * int(rate * period), period, 1.0)
    with Exporter(config) as exporter:
        time.sleep(period * 1.5)
        _, before = exporter.scrape()
        cpu0 = cpu_seconds(exporter.pid)
        time.sleep(seconds)
        cpu1 = cpu_seconds(exporter.pid)
        _, after = exporter.scrape()
    runs = sum_series(after, "probewatch_probe_runs_total") - sum_series(before, "probewatch_probe_runs_total")
    failed = (sum_series(after, "probewatch_probe_failures_total")
              - sum_series(before, "probewatch_probe_failures_total"))
    if failed:
        print(f"  probewatch: {failed:g} of {runs:g} runs failed", flush=True)
    return (cpu1 - cpu0) / max(runs, 1)


def blackbox_round(tmp: Path, binary: str, url: str, rate: float, seconds: float) -> float:
    """CPU seconds per completed probe of blackbox_exporter's http_2xx module."""
    config = tmp / "blackbox.yml"
    config.write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 1s\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]
    with started(argv, f"{base}/metrics", "blackbox_exporter") as proc:
        probe_url = f"{base}/probe?module=http_2xx&target={url}"
        asyncio.run(drive(probe_url, rate, 3.0))  # warm up
        cpu0 = cpu_seconds(proc.pid)
        done, ok = asyncio.run(drive(probe_url, rate, seconds))
        cpu1 = cpu_seconds(proc.pid)
    if ok < done:
        print(f"  blackbox: {done - ok} of {done} probes failed", flush=True)
    return (cpu1 - cpu0) / max(done, 1)


async def drive(probe_url: str, rate: float, seconds: float) -> tuple[int, int]:
    """GET ``probe_url`` ``rate`` times a second for ``seconds``, as Prometheus would."""
    import aiohttp

    done = ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def one() -> None:
            nonlocal done, ok
            async with session.get(probe_url) as resp:
                body = await resp.text()
            done += 1
            ok += "probe_success 1" in body

        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks, return_exceptions=True)
    return done, ok


def cpu_mode(args: argparse.Namespace) -> int:
    binary = find_blackbox()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    bb_version = (version.stdout or version.stderr).splitlines()[0] if (version.stdout or version.stderr) else "?"
    ours, theirs = [], []
    pressure = [cpu_pressure()]
    with tempfile.TemporaryDirectory() as tmp, target_server() as url:
        for r in range(args.rounds):
            ours.append(probewatch_round(Path(tmp), url, args.rate, args.seconds))
            theirs.append(blackbox_round(Path(tmp), binary, url, args.rate, args.seconds))
            pressure.append(cpu_pressure())
            print(f"round {r + 1}: probewatch {ours[-1] * 1e6:.0f} us/probe, "
                  f"blackbox {theirs[-1] * 1e6:.0f} us/probe, ratio {ours[-1] / theirs[-1]:.2f} "
                  f"(CPU pressure avg60 {pressure[-1]:g} %)", flush=True)
    pw, bb = statistics.median(ours), statistics.median(theirs)
    ratio = pw / bb
    figures = {
        "machine": machine(), "blackbox": bb_version, "rate_per_s": args.rate,
        "seconds_per_round": args.seconds, "rounds": args.rounds,
        "probewatch_us_per_probe": [round(x * 1e6) for x in ours],
        "blackbox_us_per_probe": [round(x * 1e6) for x in theirs],
        "median_probewatch_us": round(pw * 1e6), "median_blackbox_us": round(bb * 1e6),
        "ratio": round(ratio, 2), "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_pressure_avg60_percent": pressure,
    }
    print(f"machine: {figures['machine']}; {bb_version}; CPU pressure (avg60 %, other work "
          f"competing) {', '.join(f'{p:g}' for p in pressure)}")
    report([
        ("probewatch CPU per http probe", f"{pw * 1e6:.0f} us", "", None),
        ("blackbox CPU per http probe", f"{bb * 1e6:.0f} us", "", None),
        ("probewatch / blackbox", f"{ratio:.2f}", "<= 0.5", ratio <= 0.5),
    ])
    print(f"results written to {save('http_cpu', figures)}")
    return 0


# --- scale ----------------------------------------------------------------------


@contextmanager
def silent_listeners(count: int) -> Iterator[list[int]]:
    """Sockets that complete handshakes (large backlog) and never read or answer."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen(4096)
            ports.append(sock.getsockname()[1])
        yield ports


def scale_mode(args: argparse.Namespace) -> int:
    silent_count = int(args.probes * args.silent)
    pressure = [cpu_pressure()]
    with tempfile.TemporaryDirectory() as tmp, target_server() as url, \
            silent_listeners(10) as ports:
        targets = [f"http://127.0.0.1:{ports[i % len(ports)]}/never" for i in range(silent_count)]
        targets += [url] * (args.probes - silent_count)
        config = exporter_config(Path(tmp) / "scale.yml", targets, args.period, args.period / 2)
        with Exporter(config) as exporter:
            warmup = args.period * 1.5
            print(f"warming up {warmup:.0f}s with {args.probes} http probes "
                  f"({silent_count} to silent listeners) ...", flush=True)
            time.sleep(warmup)
            _, before = exporter.scrape()
            cpu0, t0 = cpu_seconds(exporter.pid), time.monotonic()
            wait0 = runqueue_wait(exporter.pid)
            rss = []
            while time.monotonic() < t0 + args.duration:
                time.sleep(5)
                rss.append(rss_bytes(exporter.pid))
            cpu = (cpu_seconds(exporter.pid) - cpu0) / (time.monotonic() - t0)
            waited = (runqueue_wait(exporter.pid) - wait0) / (time.monotonic() - t0)
            _, after = exporter.scrape()
            pressure.append(cpu_pressure())
    elapsed = time.monotonic() - t0

    def delta(name: str, healthy_only: bool = False) -> float:
        def total(text: str) -> float:
            lines = [ln for ln in text.splitlines() if ln.startswith(name + "{")]
            if healthy_only:
                lines = [ln for ln in lines if f'target="{url}"' in ln]
            return sum(float(ln.rpartition(" ")[2]) for ln in lines)
        return total(after) - total(before)

    runs = delta("probewatch_probe_runs_total")
    false_failures = delta("probewatch_probe_failures_total", healthy_only=True)
    skipped = delta("probewatch_probe_skipped_total")
    p99 = lag_quantile(before, after, 0.99)
    figures = {
        "machine": machine(), "probes": args.probes, "silent": silent_count, "period_s": args.period,
        "duration_s": round(elapsed), "runs_per_s": round(runs / elapsed, 1),
        "false_failures": int(false_failures), "skipped_runs": int(skipped),
        "lag_p99_ms": round(p99 * 1000, 2), "lag_p50_ms": round(lag_quantile(before, after, 0.5) * 1000, 2),
        "cpu_percent_of_one_core": round(cpu * 100, 1), "rss_max_mib": round(max(rss) / 2**20, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_pressure_avg60_percent": pressure,
        "runqueue_wait_percent": round(waited * 100, 1),
    }
    print(f"machine: {figures['machine']}; CPU pressure (avg60 %, other work competing) "
          f"{pressure[0]:g} before, {pressure[-1]:g} after; the exporter waited for a CPU "
          f"{waited * 100:.1f} % of the time (lag measured then is the machine's, not the loop's)")
    print(f"{args.probes} http probes ({silent_count} silent), period {args.period:g}s, measured "
          f"{elapsed:.0f}s: {figures['runs_per_s']} runs/s, CPU {figures['cpu_percent_of_one_core']} % of a core")
    report([
        ("false failures (healthy targets)", str(figures["false_failures"]), "0", false_failures == 0),
        ("skipped runs", str(figures["skipped_runs"]), "0", skipped == 0),
        ("scheduler lag p99", f"{figures['lag_p99_ms']} ms", "< 50 ms", p99 < 0.05),
        ("exporter RSS (max)", f"{figures['rss_max_mib']} MiB", "< 300 MiB", max(rss) < 300 * 2**20),
    ])
    print(f"results written to {save('http_scale', figures)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    cpu = sub.add_parser("cpu", help="CPU per probe beside blackbox_exporter")
    cpu.add_argument("--rate", type=float, default=200.0, help="probes per second for each exporter")
    cpu.add_argument("--seconds", type=float, default=15.0, help="measured seconds per exporter per round")
    cpu.add_argument("--rounds", type=int, default=3)
    scale = sub.add_parser("scale", help="5,000 probes, 20%% to silent listeners")
    scale.add_argument("--probes", type=int, default=5000)
    scale.add_argument("--silent", type=float, default=0.2, help="share of probes to silent listeners")
    scale.add_argument("--period", type=float, default=10.0)
    scale.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    return cpu_mode(args) if args.mode == "cpu" else scale_mode(args)


if __name__ == "__main__":
    sys.exit(main())
