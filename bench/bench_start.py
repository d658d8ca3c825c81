"""Start to /-/ready only, a few rounds: `serve --workers N` on ``--probes`` tcp probes.

    python bench/bench_start.py [--probes 100000] [--workers 2] [--rounds 3]

bench_scale.py measures a start once and then a minute of running; this one
starts the exporter ``--rounds`` times on the same listeners and config
(bench_scale's) and, at the first 200 of /-/ready, reads the CPU seconds each
process (parent, every worker) has used and their RSS: on a shared machine the
CPU figures hold steadier than the wall time.  Prints each round and the
medians; writes bench/results/start_<probes>_w<N>.json.  Bounded: each round
waits at most ``--ready-timeout``; everything started is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import children, wait_ready
from common import ROOT, AcceptListeners, cpu_seconds, free_port, machine, rss_bytes, save, stop, tcp_config


def one_start(config: Path, workers: str, timeout: float) -> dict[str, Any]:
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "serve", f"--config.file={config}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning",
         "--config.watch-interval=0", f"--workers={workers}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ready = wait_ready(proc, port, t0 + timeout) - t0
        pids = [proc.pid, *children(proc.pid)]
        cpu = [cpu_seconds(p) for p in pids]
        rss = sum(rss_bytes(p) for p in pids)
    finally:
        stop(proc)
    return {"start_to_ready_s": round(ready, 2), "cpu_s_parent": round(cpu[0], 2),
            "cpu_s_workers": [round(c, 2) for c in cpu[1:]], "rss_mib": round(rss / 2**20, 1),
            "load_average": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=100_000)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    args = parser.parse_args()
    rounds: list[dict[str, Any]] = []
    with AcceptListeners(args.listeners) as listeners, tempfile.TemporaryDirectory() as tmp:
        config = tcp_config(Path(tmp) / "start.yml", args.probes, args.period, listeners.ports)
        for i in range(max(1, args.rounds)):
            got = one_start(config, args.workers, args.ready_timeout)
            rounds.append(got)
            print(f"round {i + 1}: start to /-/ready {got['start_to_ready_s']} s, CPU parent "
                  f"{got['cpu_s_parent']} s, workers {got['cpu_s_workers']} s, RSS {got['rss_mib']} MiB "
                  f"(load {got['load_average']})", flush=True)
    figures = {
        "machine": machine(), "probes": args.probes, "workers": args.workers, "rounds": rounds,
        "start_to_ready_s_median": statistics.median(float(r["start_to_ready_s"]) for r in rounds),
        "cpu_s_parent_median": statistics.median(float(r["cpu_s_parent"]) for r in rounds),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"median start to /-/ready {figures['start_to_ready_s_median']} s (goal < 5 s), "
          f"parent CPU {figures['cpu_s_parent_median']} s; {machine()}")
    print(f"results written to {save(f'start_{args.probes}_w{args.workers}', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
