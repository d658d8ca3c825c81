"""tcp probes against local listeners: scale (issue 2, 10), and CPU side by side (issue 11).

    python bench/bench_tcp.py [--probes 10000] [--period 10] [--duration 120] [--scrape-interval 15]
    python bench/bench_tcp.py --probes 60000 --duration 60     # issue 10: overload shown, never failed
    python bench/bench_tcp.py cpu [--probes 10000] [--rounds 3] [--seconds 20]
    python bench/bench_tcp.py cpu --probes 1000,5000,10000,20000   # the sweep bench/plot.py draws

``cpu`` (issue 11, goal 4): in each round, one after the other against the same
listeners at the same rate (probes / period): probewatch running N tcp probes
on its own schedule (scraped with gzip every 15 s, as Prometheus would);
blackbox_exporter's tcp_connect module driven through GET
/probe?module=tcp_connect&target=... by this script, as Prometheus drives it;
and the floor, a bare asyncio script doing non-blocking connect + close (its own
epoll set watched as one loop reader).  CPU of
each process from /proc/PID/stat (this driver's own CPU is not charged to
anyone), per run; median of the rounds; ratios printed.  Then 5 scrapes of
/metrics, plain and gzip.  One summary block per probe count, JSON in
bench/results/tcp_cpu_N.json.  blackbox_exporter: the Debian package
prometheus-blackbox-exporter (installed with apt-get when missing and root).

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
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    AcceptListeners,
    Exporter,
    blackbox_version,
    cpu_seconds,
    find_blackbox,
    free_port,
    lag_quantile,
    machine,
    quantile,
    report,
    rss_bytes,
    save,
    stop,
    sum_series,
    tcp_config,
    timed_get,
    wait_http,
)


def main() -> int:
    if sys.argv[1:2] == ["cpu"]:
        return cpu_mode(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=10000)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--scrape-interval", type=float, default=15.0,
                        help="seconds between /metrics scrapes (Prometheus' default is 15)")
    args = parser.parse_args()

    with AcceptListeners(args.listeners) as listeners, tempfile.TemporaryDirectory() as tmp:
        config = tcp_config(Path(tmp) / "bench.yml", args.probes, args.period, listeners.ports)
        with Exporter(config, ready_timeout=60 + args.probes / 250) as exporter:
            return measure(exporter, args)


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


# --- cpu: side by side with blackbox_exporter and the floor ----------------------------

# The floor: the least a Python prober on asyncio pays for a plain connect, in a
# process of its own: a non-blocking connect_ex, the socket put in an epoll set of
# its own (one-shot writability) that the loop watches as one reader, and one
# poll per batch of finished connects, then close; started in batches every 10
# ms.  No tasks, no state, no HTTP: the kernel and the event loop.  (It used
# loop.add_writer per socket until probewatch's plain connects took this path,
# probes/writable.py: the floor stays the cheapest way, not the common one.)
FLOOR = """
import asyncio, errno, select, socket, sys
async def main(rate, seconds, ports):
    loop = asyncio.get_running_loop()
    ep, waiting = select.epoll(), {}
    def ready():
        for fd, _ in ep.poll(0, 1024):
            waiting.pop(fd).close()
    loop.add_reader(ep.fileno(), ready)
    def connect(port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        if sock.connect_ex(("127.0.0.1", port)) == errno.EINPROGRESS:
            ep.register(sock.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
            waiting[sock.fileno()] = sock
        else:
            sock.close()
    t0, n = loop.time(), 0
    while loop.time() - t0 < seconds:
        await asyncio.sleep(0.01)
        due = int((loop.time() - t0) * rate)
        while n < due:
            connect(ports[n % len(ports)])
            n += 1
asyncio.run(main(float(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3:]]))
"""


@dataclass
class Figures:
    """One contender in one round."""

    us_per_run: float
    runs_per_s: float
    lag_p99_ms: float  # probewatch: scheduler lag; blackbox: slot to answer, as the driver saw it
    failed: int


def probewatch_round(args: argparse.Namespace, ports: list[int], probes: int, tmp: Path) -> Figures:
    """probewatch with ``probes`` tcp probes at ``args.period``: CPU of its process per run.

    Scraped every ``args.scrape_interval`` with Accept-Encoding: gzip inside the
    measured window, as Prometheus would (blackbox's HTTP is charged to it too).
    """
    config = tcp_config(tmp / "cpu.yml", probes, args.period, ports)
    with Exporter(config, ready_timeout=60 + probes / 250) as exporter:
        time.sleep(args.period * 1.2)
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        _, _, body = timed_get(url, gzip=True)
        before, tb = body.decode(), time.monotonic()
        cpu0 = cpu_seconds(exporter.pid)
        end = tb + args.seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(args.scrape_interval, left))
            if end - time.monotonic() > 0.5:
                timed_get(url, gzip=True)
        cpu1, ta = cpu_seconds(exporter.pid), time.monotonic()
        _, _, body = timed_get(url, gzip=True)
        after = body.decode()
    runs = sum_series(after, "probewatch_probe_runs_total") - sum_series(before, "probewatch_probe_runs_total")
    failed = (sum_series(after, "probewatch_probe_failures_total")
              - sum_series(before, "probewatch_probe_failures_total"))
    skipped = (sum_series(after, "probewatch_probe_skipped_total")
               - sum_series(before, "probewatch_probe_skipped_total"))
    if skipped:
        print(f"  probewatch: {skipped:g} runs skipped", flush=True)
    rate = runs / (ta - tb)
    return Figures((cpu1 - cpu0) / (ta - tb) / max(rate, 1e-9) * 1e6, rate,
                   lag_quantile(before, after, 0.99) * 1000, int(failed))


def blackbox_round(args: argparse.Namespace, ports: list[int], rate: float, binary: str,
                   tmp: Path) -> Figures:
    """blackbox_exporter's tcp_connect module driven at ``rate`` through /probe, as Prometheus does."""
    config = tmp / "blackbox.yml"
    config.write_text(f"modules:\n  tcp_connect:\n    prober: tcp\n    timeout: {args.period / 2:g}s\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_http(f"{base}/metrics", proc, "blackbox_exporter")
        targets = [f"{base}/probe?module=tcp_connect&target=127.0.0.1:{p}" for p in ports]
        asyncio.run(drive(targets, rate, 3.0))  # warm up
        box: dict[str, float] = {}
        done, ok, lags = asyncio.run(drive(targets, rate, args.seconds, proc.pid, box))
    finally:
        stop(proc)
    if ok < done:
        print(f"  blackbox: {done - ok} of {done} probes failed or were not answered in time", flush=True)
    seconds = box["t1"] - box["t0"]
    cpu = box["cpu1"] - box["cpu0"]
    # Per successful probe: a request the driver gave up on may never have been probed.
    return Figures(cpu / max(ok, 1) * 1e6, ok / seconds, quantile(lags, 0.99) * 1000, done - ok)


async def drive(targets: list[str], rate: float, seconds: float, pid: int = 0,
                box: dict[str, float] | None = None) -> tuple[int, int, list[float]]:
    """GET the targets round robin, ``rate`` a second for ``seconds``, in 10 ms batches.

    Returns (answered, successful, seconds from each request's slot to its answer).
    With ``pid``, ``box`` gets that process's CPU seconds at the first slot and
    once the last answer is in (cpu0/cpu1, and the times t0/t1).
    """
    import aiohttp

    done = ok = 0
    lags: list[float] = []
    timeout = aiohttp.ClientTimeout(total=30)
    # As Prometheus: one request per target at a time, many targets at once (no queue here).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024), timeout=timeout) as session:

        async def one(url: str, slot: float) -> None:
            nonlocal done, ok
            try:
                async with session.get(url) as resp:
                    body = await resp.text()
            except (aiohttp.ClientError, TimeoutError):
                body = ""
            lags.append(loop.time() - slot)
            done += 1
            ok += "probe_success 1" in body

        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        start, n, total = loop.time(), 0, int(rate * seconds)
        if box is not None:
            box["cpu0"], box["t0"] = cpu_seconds(pid), time.monotonic()
        while n < total:
            await asyncio.sleep(0.01)
            due = min(total, int((loop.time() - start) * rate))
            while n < due:
                tasks.append(asyncio.ensure_future(one(targets[n % len(targets)], start + n / rate)))
                n += 1
        await asyncio.gather(*tasks, return_exceptions=True)
        if box is not None:
            box["cpu1"], box["t1"] = cpu_seconds(pid), time.monotonic()
    return done, ok, lags


def floor_round(args: argparse.Namespace, ports: list[int], rate: float) -> Figures:
    warm = 3.0
    proc = subprocess.Popen([sys.executable, "-c", FLOOR, str(rate), str(warm + args.seconds + 5),
                             *map(str, ports)], start_new_session=True)
    try:
        time.sleep(warm)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.seconds)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        stop(proc)
    return Figures((cpu1 - cpu0) / (rate * (t1 - t0)) * 1e6, rate, 0.0, 0)


def scrape_times(args: argparse.Namespace, ports: list[int], probes: int, tmp: Path) -> dict[str, float]:
    """/metrics of ``probes`` healthy tcp probes: median of 5 scrapes, plain and gzip."""
    config = tcp_config(tmp / "scrape.yml", probes, args.period, ports)
    with Exporter(config, ready_timeout=60 + probes / 250) as exporter:
        time.sleep(args.period * 1.2)
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        out: dict[str, float] = {}
        for name, gz in (("plain", False), ("gzip", True)):
            got = []
            for _ in range(5):
                seconds, wire, _ = timed_get(url, gzip=gz)
                got.append(seconds)
                time.sleep(0.5)
            out[f"scrape_{name}_ms"] = round(statistics.median(got) * 1000, 1)
            out[f"scrape_{name}_bytes"] = wire
    return out


def cpu_mode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_tcp.py cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", default="10000",
                        help="probe count, or several separated by commas (a sweep for bench/plot.py)")
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.probes.split(",")]
    binary = find_blackbox()
    bb_version = blackbox_version(binary)
    results = []
    with tempfile.TemporaryDirectory() as tmpdir, AcceptListeners(args.listeners) as listeners:
        tmp = Path(tmpdir)
        for probes in counts:
            rate = probes / args.period
            rounds: dict[str, list[Figures]] = {"probewatch": [], "blackbox": [], "floor": []}
            for r in range(args.rounds):
                rounds["probewatch"].append(probewatch_round(args, listeners.ports, probes, tmp))
                rounds["blackbox"].append(blackbox_round(args, listeners.ports, rate, binary, tmp))
                rounds["floor"].append(floor_round(args, listeners.ports, rate))
                print(f"{probes} probes, round {r + 1}: " + ", ".join(
                    f"{name} {figs[-1].us_per_run:.0f} us/run" for name, figs in rounds.items()), flush=True)
            scrapes = scrape_times(args, listeners.ports, probes, tmp) if probes >= 1000 else {}
            results.append(summarize(args, probes, rounds, scrapes, bb_version))
    for figures in results:
        print_summary(figures)
    return 0


def summarize(args: argparse.Namespace, probes: int, rounds: dict[str, list[Figures]],
              scrapes: dict[str, float], bb_version: str) -> dict[str, Any]:
    med = {name: statistics.median(f.us_per_run for f in figs) for name, figs in rounds.items()}
    figures: dict[str, Any] = {
        "machine": machine(), "blackbox": bb_version, "probes": probes, "period_s": args.period,
        "rate_per_s": probes / args.period, "seconds_per_round": args.seconds, "rounds": args.rounds,
        "load_average": os.getloadavg()[0],
        **{f"{name}_us_per_run": [round(f.us_per_run, 1) for f in figs] for name, figs in rounds.items()},
        **{f"{name}_runs_per_s": [round(f.runs_per_s, 1) for f in figs] for name, figs in rounds.items()},
        **{f"{name}_failed": sum(f.failed for f in figs) for name, figs in rounds.items()},
        "probewatch_lag_p99_ms": [round(f.lag_p99_ms, 2) for f in rounds["probewatch"]],
        "blackbox_answer_p99_ms": [round(f.lag_p99_ms, 2) for f in rounds["blackbox"]],
        "median_probewatch_us": round(med["probewatch"], 1), "median_blackbox_us": round(med["blackbox"], 1),
        "median_floor_us": round(med["floor"], 1),
        "median_probewatch_lag_p99_ms": round(statistics.median(f.lag_p99_ms for f in rounds["probewatch"]), 2),
        "median_blackbox_answer_p99_ms": round(statistics.median(f.lag_p99_ms for f in rounds["blackbox"]), 2),
        "blackbox_over_probewatch": round(med["blackbox"] / max(med["probewatch"], 1e-9), 2),
        "probewatch_over_floor_us": round(med["probewatch"] - med["floor"], 1),
        **scrapes, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    figures["results_file"] = str(save(f"tcp_cpu_{probes}", figures).relative_to(ROOT))
    return figures


def print_summary(f: dict[str, Any]) -> None:
    print(f"\n== tcp probes side by side: {f['probes']} probes, {f['rate_per_s']:g} runs/s, "
          f"median of {f['rounds']} rounds of {f['seconds_per_round']:g}s ==")
    print(f"machine: {f['machine']}; {f['blackbox']}; load average {f['load_average']:.1f} "
          "(a shared machine: other processes' load shows in every figure)")
    pw, bb, fl = f["median_probewatch_us"], f["median_blackbox_us"], f["median_floor_us"]
    rows: list[tuple[str, str, str, bool | None]] = [
        ("probewatch CPU per run", f"{pw:.0f} us", "<= 75 us", pw <= 75),
        ("blackbox CPU per probe", f"{bb:.0f} us", "", None),
        ("blackbox probes answered", f"{statistics.median(f['blackbox_runs_per_s']):.0f}/s",
         f"{f['rate_per_s']:g}/s asked", None),
        ("floor (bare asyncio connect)", f"{fl:.0f} us", "", None),
        ("blackbox / probewatch", f"{f['blackbox_over_probewatch']:.2f}x", ">= 5x", f["blackbox_over_probewatch"] >= 5),
        ("probewatch above the floor", f"{f['probewatch_over_floor_us']:.0f} us", "", None),
        ("probewatch lag p99", f"{f['median_probewatch_lag_p99_ms']} ms", "< 25 ms",
         f["median_probewatch_lag_p99_ms"] < 25 if f["probes"] == 10000 else None),
        ("blackbox slot-to-answer p99", f"{f['median_blackbox_answer_p99_ms']} ms", "", None),
    ]
    if "scrape_plain_ms" in f:
        rows += [
            ("/metrics scrape, plain", f"{f['scrape_plain_ms']} ms", "< 40 ms",
             f["scrape_plain_ms"] < 40 if f["probes"] == 10000 else None),
            ("/metrics scrape, gzip", f"{f['scrape_gzip_ms']} ms", "< 40 ms",
             f["scrape_gzip_ms"] < 40 if f["probes"] == 10000 else None),
            ("scrape bytes plain / gzip", f"{f['scrape_plain_bytes'] / 1e6:.2f} / "
             f"{f['scrape_gzip_bytes'] / 1e6:.2f} MB", "", None),
        ]
    report(rows)
    failed = f["probewatch_failed"] + f["blackbox_failed"]
    print(f"failed runs: probewatch {f['probewatch_failed']}, blackbox {f['blackbox_failed']}"
          + ("" if failed == 0 else "  (against healthy listeners: look at the machine)"))
    print(f"results written to {f['results_file']}")


if __name__ == "__main__":
    sys.exit(main())
