"""100,000 tcp probes at a 10 s period on one instance: `serve --workers N` (issue 11, goal 5).

    python bench/bench_scale.py [--probes 100000] [--workers 2] [--period 10] [--duration 60]
    python bench/bench_scale.py --probes 10000 --workers 1      # the one-process baseline

Starts local listeners (a tight accept-and-close loop in its own process, so
the listeners cost the machine as little as possible), writes a config of
``--probes`` tcp probes spread over them, starts ``probewatch serve
--workers N`` and measures:

- start to /-/ready (from the exec of the parent to the first 200);
- over ``--duration`` seconds after a warm-up of 1.5 periods: runs/s, failed
  and skipped runs, scheduler lag p50/p99 (the merged histogram), CPU of the
  parent and of each worker (utime+stime from /proc/PID/stat) and CPU per run;
- RSS of parent + workers (sum), sampled at each scrape, max;
- /metrics with ``Accept-Encoding: gzip`` (as Prometheus sends it): time to the
  last byte, median of the scrapes, compressed and plain size.

Prints each figure beside its goal and writes bench/results/scale_<probes>_w<N>.json.
Bounded: warm-up + duration, then it stops what it started, by PID.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    AcceptListeners,
    cpu_seconds,
    free_port,
    lag_quantile,
    machine,
    report,
    rss_bytes,
    save,
    sum_series,
    tcp_config,
)


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    return out


def scrape(port: int) -> tuple[float, int, str]:
    """(seconds to the last byte, compressed bytes, the page) of one gzip scrape."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = resp.read()
        encoding = resp.headers.get("Content-Encoding", "")
    seconds = time.perf_counter() - t0
    text = gzip.decompress(body).decode() if encoding == "gzip" else body.decode()
    return seconds, len(body), text


def whole(port: int, tries: int = 3) -> str:
    """A page with every worker's part (a worker slow to answer is left out of a page)."""
    text = ""
    for _ in range(tries):
        _, _, text = scrape(port)
        if "probewatch_scheduler_lag_seconds_bucket" in text:
            return text
    raise SystemExit(f"{tries} scrapes in a row lacked a worker's part (workers too slow to answer)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=100_000)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args()
    exporter: subprocess.Popen[bytes] | None = None
    with AcceptListeners(args.listeners) as listeners, tempfile.TemporaryDirectory() as tmp:
        try:
            config = tcp_config(Path(tmp) / "scale.yml", args.probes, args.period, listeners.ports)
            port = free_port()
            t0 = time.monotonic()
            exporter = subprocess.Popen(
                [sys.executable, "-m", "exporter.cli", "serve", f"--config.file={config}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning",
                 "--config.watch-interval=0", f"--workers={args.workers}"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            ready = wait_ready(exporter, port, t0 + args.ready_timeout) - t0
            print(f"start to /-/ready: {ready:.2f}s", flush=True)
            return measure(exporter.pid, port, ready, listeners.pid, args)
        finally:
            if exporter is not None and exporter.poll() is None:
                os.kill(exporter.pid, signal.SIGTERM)
                try:
                    exporter.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(exporter.pid, signal.SIGKILL)
                    exporter.wait()


def wait_ready(proc: subprocess.Popen[bytes], port: int, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the exporter exited during start")
        time.sleep(0.05)
    raise SystemExit("the exporter did not become ready in time")


def measure(pid: int, port: int, ready: float, listener_pid: int, args: argparse.Namespace) -> int:
    warmup = args.period * 1.5
    print(f"warming up {warmup:.0f}s with {args.probes} probes on {args.workers} worker(s) ...", flush=True)
    time.sleep(warmup)
    pids = [pid, *children(pid)]
    before = whole(port)
    cpu0 = {p: cpu_seconds(p) for p in pids}
    listener_cpu0 = cpu_seconds(listener_pid)
    t0 = time.monotonic()
    scrapes: list[tuple[float, int]] = []
    rss: list[int] = []
    rss_each: dict[int, int] = {}
    text = before
    deadline = t0 + args.duration
    while time.monotonic() < deadline:
        time.sleep(min(args.scrape_interval, max(0.0, deadline - time.monotonic())))
        seconds, size, text = scrape(port)
        scrapes.append((seconds, size))
        now = {p: rss_bytes(p) for p in pids if os.path.exists(f"/proc/{p}")}
        rss.append(sum(now.values()))
        rss_each = {p: max(v, rss_each.get(p, 0)) for p, v in now.items()}
    elapsed = time.monotonic() - t0
    cpu = {p: (cpu_seconds(p) - cpu0[p]) / elapsed for p in pids if os.path.exists(f"/proc/{p}")}
    listener_cpu = (cpu_seconds(listener_pid) - listener_cpu0) / elapsed
    partial = sum(1 for _, size in scrapes if size < max(z for _, z in scrapes) / 4)
    after = text if "probewatch_scheduler_lag_seconds_bucket" in text else whole(port)

    def delta(name: str) -> float:
        return sum_series(after, name) - sum_series(before, name)

    runs = delta("probewatch_probe_runs_total")
    failures = delta("probewatch_probe_failures_total")
    skipped = delta("probewatch_skipped_runs_total")
    p99, p50 = lag_quantile(before, after, 0.99), lag_quantile(before, after, 0.50)
    probes_seen = after.count("\nprobewatch_probe_runs_total{")
    total_cpu = sum(cpu.values())
    median_scrape = statistics.median(s for s, _ in scrapes)
    figures = {
        "machine": machine(), "probes": args.probes, "probes_in_metrics": probes_seen,
        "workers": args.workers, "period_s": args.period, "duration_s": round(elapsed),
        "start_to_ready_s": round(ready, 2),
        "runs_per_s": round(runs / elapsed, 1), "expected_runs_per_s": round(args.probes / args.period, 1),
        "failed_runs": int(failures), "skipped_runs": int(skipped),
        "lag_p50_ms": round(p50 * 1000, 2), "lag_p99_ms": round(p99 * 1000, 2),
        "cpu_percent_parent": round(cpu.get(pid, 0.0) * 100, 1),
        "cpu_percent_workers": [round(v * 100, 1) for p, v in cpu.items() if p != pid],
        "cpu_percent_total": round(total_cpu * 100, 1),
        "cpu_percent_listeners": round(listener_cpu * 100, 1),
        "cpu_us_per_run": round(total_cpu * elapsed / runs * 1e6, 1) if runs else None,
        "rss_max_mib": round(max(rss) / 2**20, 1),
        "rss_max_mib_parent": round(rss_each.get(pid, 0) / 2**20, 1),
        "rss_max_mib_workers": [round(v / 2**20, 1) for p, v in rss_each.items() if p != pid],
        "scrape_gzip_median_ms": round(median_scrape * 1000, 1),
        "scrape_gzip_max_ms": round(max(s for s, _ in scrapes) * 1000, 1),
        "scrape_gzip_bytes": scrapes[-1][1], "scrapes_missing_a_worker": partial,
        "scrape_plain_bytes": len(after.encode()),
        "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"machine: {figures['machine']} (shared: load average {figures['load_average']:.1f})")
    print(f"{args.probes} tcp probes, {args.workers} worker(s), period {args.period:g}s, measured {elapsed:.0f}s: "
          f"{figures['runs_per_s']} runs/s of {figures['expected_runs_per_s']}, {figures['failed_runs']} failed, "
          f"{figures['probes_in_metrics']} probes in /metrics")
    if partial:
        print(f"{partial} of {len(scrapes)} scrapes left a slow worker out (answered without its part)")
    print(f"CPU: parent {figures['cpu_percent_parent']}%, workers {figures['cpu_percent_workers']}%, "
          f"{figures['cpu_us_per_run']} us per run; listeners {figures['cpu_percent_listeners']}%")
    report([
        ("skipped runs", str(figures["skipped_runs"]), "0", skipped == 0),
        ("scheduler lag p99", f"{figures['lag_p99_ms']} ms", "< 100 ms", p99 < 0.1),
        ("/metrics gzip (median)", f"{figures['scrape_gzip_median_ms']} ms", "< 1000 ms", median_scrape < 1.0),
        ("RSS parent+workers (max)", f"{figures['rss_max_mib']} MiB", "< 1024 MiB", max(rss) < 2**30),
        ("start to /-/ready", f"{figures['start_to_ready_s']} s", "< 5 s", ready < 5.0),
    ])
    print(f"results written to {save(f'scale_{args.probes}_w{args.workers}', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
