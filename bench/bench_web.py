"""/metrics with and without gzip at N tcp probes (issue 11 goal 3, issue 15's web server).

    python bench/bench_web.py [--probes 10000] [--rounds 3]

Runs the exporter with N tcp probes against local listeners (10s period), waits
until every probe has run, then scrapes /metrics identity and gzip, ROUNDS
times each, and prints the median wall time and bytes of each, side by side.
Writes bench/results/web.json.  Bounded: N probes, ROUNDS scrapes, a 120s
start limit; it stops what it started.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import AcceptListeners, Exporter, machine, report, save, sum_series, tcp_config


def scrape(port: int, encoding: str) -> tuple[float, int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept-Encoding": encoding})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = resp.read()
        compressed = resp.headers.get("Content-Encoding") == "gzip"
    elapsed = time.perf_counter() - started
    text = (gzip.decompress(body) if compressed else body).decode()
    return elapsed, len(body), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--listeners", type=int, default=50)
    args = parser.parse_args()
    with AcceptListeners(args.listeners) as listeners, tempfile.TemporaryDirectory() as tmp:
        config = tcp_config(Path(tmp) / "bench.yml", args.probes, 10.0, listeners.ports)
        with Exporter(config) as exporter:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                _, _, text = scrape(exporter.port, "identity")
                if sum_series(text, "probewatch_probe_up") >= args.probes:
                    break
                time.sleep(1)
            figures: dict[str, object] = {"machine": machine(), "probes": args.probes}
            for encoding in ("identity", "gzip"):
                runs = [scrape(exporter.port, encoding)[:2] for _ in range(args.rounds)]
                figures[f"{encoding}_seconds"] = statistics.median(r[0] for r in runs)
                figures[f"{encoding}_bytes"] = int(statistics.median(r[1] for r in runs))
    ratio = float(figures["identity_bytes"]) / max(float(figures["gzip_bytes"]), 1)  # type: ignore[arg-type]
    figures["ratio"] = round(ratio, 1)
    print(f"{args.probes} tcp probes; {figures['machine']}; medians of {args.rounds} scrapes")
    report([
        ("scrape, identity", f"{figures['identity_seconds']:.3f} s", "", None),
        ("scrape, gzip", f"{figures['gzip_seconds']:.3f} s", "< 1 s", float(figures["gzip_seconds"]) < 1),  # type: ignore[arg-type]
        ("bytes, identity", f"{figures['identity_bytes']:,}", "", None),
        ("bytes, gzip", f"{figures['gzip_bytes']:,}", "", None),
        ("compression", f"{ratio:.1f}x", "", None),
    ])
    print(f"written: {save('web', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
