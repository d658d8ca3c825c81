"""10,000 tcp probes against local listeners at a 10s period (issue 2's benchmark).

    python bench/bench_tcp.py [--probes 10000] [--period 10] [--duration 120] [--scrape-interval 15]
    python bench/bench_tcp.py --probes 60000 --duration 60     # issue 10: overload shown, never failed

With more probes than the machine can run, the shortfall must show only as
skipped runs (cause late, probewatch_skipped_runs_total) and never as failed
runs: the last line says which of the two outcomes this run had.

Prints each figure beside its goal and writes bench/results/tcp.json.  The
exporter runs as its own process; CPU and RSS are read from /proc for that
process only (the listeners run in another process).  Bounded: it stops after
warm-up + duration, and stops what it started.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    Exporter,
    cpu_seconds,
    lag_quantile,
    machine,
    report,
    rss_bytes,
    save,
    sum_series,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=10000)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--scrape-interval", type=float, default=15.0,
                        help="seconds between /metrics scrapes (Prometheus' default is 15)")
    args = parser.parse_args()

    listeners = subprocess.Popen([sys.executable, str(ROOT / "bench" / "listeners.py"), str(args.listeners)],
                                 stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert listeners.stdout is not None
        ports = [int(p) for p in listeners.stdout.readline().split()]
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "bench.yml"
            lines = [f"defaults: {{period: {args.period}s, timeout: {args.period / 2}s}}", "probes:"]
            lines += [f"  - {{name: tcp-{i:05d}, kind: tcp, target: '127.0.0.1:{ports[i % len(ports)]}'}}"
                      for i in range(args.probes)]
            config.write_text("\n".join(lines) + "\n")
            with Exporter(config, ready_timeout=60 + args.probes / 250) as exporter:
                return measure(exporter, args)
    finally:
        listeners.terminate()
        listeners.wait(10)


def measure(exporter: Exporter, args: argparse.Namespace) -> int:
    warmup = args.period * 1.5
    print(f"warming up {warmup:.0f}s with {args.probes} probes ...", flush=True)
    time.sleep(warmup)
    _, before = exporter.scrape()
    cpu0, t0 = cpu_seconds(exporter.pid), time.monotonic()
    scrapes, rss = [], []
    deadline = t0 + args.duration
    while time.monotonic() < deadline:
        time.sleep(min(args.scrape_interval, max(0.0, deadline - time.monotonic())))
        seconds, _ = exporter.scrape()
        scrapes.append(seconds)
        rss.append(rss_bytes(exporter.pid))
    cpu = (cpu_seconds(exporter.pid) - cpu0) / (time.monotonic() - t0)
    _, after = exporter.scrape()
    runs = sum_series(after, "probewatch_probe_runs_total") - sum_series(before, "probewatch_probe_runs_total")
    skipped = (sum_series(after, "probewatch_probe_skipped_total")
               - sum_series(before, "probewatch_probe_skipped_total"))
    failures = (sum_series(after, "probewatch_probe_failures_total")
                - sum_series(before, "probewatch_probe_failures_total"))
    late = (sum_series(after, 'probewatch_skipped_runs_total{cause="late"}')
            - sum_series(before, 'probewatch_skipped_runs_total{cause="late"}'))
    busy = (sum_series(after, 'probewatch_skipped_runs_total{cause="busy"}')
            - sum_series(before, 'probewatch_skipped_runs_total{cause="busy"}'))
    p99 = lag_quantile(before, after, 0.99)
    p50 = lag_quantile(before, after, 0.50)
    elapsed = time.monotonic() - t0
    figures = {
        "machine": machine(), "probes": args.probes, "period_s": args.period, "duration_s": round(elapsed),
        "runs_per_s": round(runs / elapsed, 1), "failed_runs": int(failures), "skipped_runs": int(skipped),
        "lag_p50_ms": round(p50 * 1000, 2), "lag_p99_ms": round(p99 * 1000, 2),
        "cpu_percent_of_one_core": round(cpu * 100, 1), "rss_max_mib": round(max(rss) / 2**20, 1),
        "scrape_median_ms": round(statistics.median(scrapes) * 1000, 1),
        "scrape_max_ms": round(max(scrapes) * 1000, 1), "scrape_bytes": len(after.encode()),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"machine: {figures['machine']}")
    print(f"{args.probes} tcp probes, period {args.period:g}s, scraped every {args.scrape_interval:g}s, "
          f"measured {elapsed:.0f}s: "
          f"{figures['runs_per_s']} runs/s, {figures['failed_runs']} failed")
    report([
        ("skipped runs", str(figures["skipped_runs"]), "0", skipped == 0),
        ("scheduler lag p99", f"{figures['lag_p99_ms']} ms", "< 100 ms", p99 < 0.1),
        ("exporter CPU", f"{figures['cpu_percent_of_one_core']} %", "< 50 % of a core", cpu < 0.5),
        ("exporter RSS (max)", f"{figures['rss_max_mib']} MiB", "< 200 MiB", max(rss) < 200 * 2**20),
        ("/metrics scrape (median)", f"{figures['scrape_median_ms']} ms", "< 250 ms",
         statistics.median(scrapes) < 0.25),
    ])
    if skipped == 0 and failures == 0:
        print("outcome: every run on schedule (0 skipped, 0 failed)")
    elif failures == 0:
        print(f"outcome: overloaded, shown only as skips: {late:g} late + {busy:g} busy skipped, 0 failed "
              "(ProbewatchOverloaded fires on increase(probewatch_skipped_runs_total))")
    else:
        print(f"outcome: {failures:g} FAILED runs against healthy listeners (false failures)")
    print(f"results written to {save('tcp' if args.probes == 10000 else f'tcp_{args.probes}', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
