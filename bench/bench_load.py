"""How long loading a config of N simple tcp probes takes (issue 11 goal 5's parent-side part).

    python bench/bench_load.py [--probes 100000] [--rounds 3] [--profile] [--ready]

Writes ``defaults:`` and N probes (``- {name: tcp-00001, kind: tcp, target: '127.0.0.1:PORT'}``)
to a temporary folder, then runs ``exporter.config.load_config`` in a fresh
subprocess per round and reads that process's CPU (user + system, from
/proc/PID/stat, measured around the call only) and wall time.  Prints the
median of the rounds beside the goal (< 2 s CPU for 100,000 probes) and
writes bench/results/load.json.  ``--profile`` prints a cProfile of one load
instead.  ``--ready`` also times ``probewatch serve`` from start to its first
200 on /-/ready (the probes at a 1 h period, so their runs stay out of the figure)
and the serving process's CPU by then.  Bounded: each round is one load, with a 300 s timeout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import time

from common import ROOT, Exporter, cpu_seconds, machine, report, save

GOAL_CPU = 2.0  # seconds for 100,000 probes

CHILD = r"""
import json, os, sys, time
from exporter.config import load_config

def cpu():
    with open(f"/proc/{os.getpid()}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

c0, t0 = cpu(), time.perf_counter()
config = load_config(sys.argv[1])
t1, c1 = time.perf_counter(), cpu()
print(json.dumps({"probes": len(config.probes), "cpu": c1 - c0, "wall": t1 - t0}))
"""

PROFILE = r"""
import cProfile, pstats, sys
from exporter.config import load_config
cProfile.run("load_config(sys.argv[1])", sys.argv[2])
pstats.Stats(sys.argv[2]).sort_stats("cumulative").print_stats(40)
"""


def write_config(path: Path, probes: int, period: str = "30s") -> None:
    lines = ["defaults:", f"  period: {period}", "  timeout: 5s", "  labels: {team: bench}", "probes:"]
    lines += [f"  - {{name: tcp-{i:06d}, kind: tcp, target: '127.0.0.1:{1024 + i % 60000}'}}"
              for i in range(probes)]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--ready", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        config = Path(tmp) / "probewatch.yml"
        write_config(config, args.probes)
        if args.profile:
            subprocess.run([sys.executable, "-c", PROFILE, str(config), str(Path(tmp) / "prof")],
                           cwd=ROOT, check=True, timeout=600)
            return 0
        rounds = []
        for _ in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, str(config)], cwd=ROOT, check=True,
                                 capture_output=True, text=True, timeout=300)
            rounds.append(json.loads(out.stdout))
        ready = []
        if args.ready:
            write_config(config, args.probes, period="1h")
            for _ in range(args.rounds):
                t0 = time.monotonic()
                with Exporter(config, ready_timeout=120) as exporter:
                    ready.append({"ready": time.monotonic() - t0, "cpu": cpu_seconds(exporter.pid)})
    if any(r["probes"] != args.probes for r in rounds):
        raise SystemExit(f"loaded {rounds[0]['probes']} probes, not {args.probes}")
    cpu = statistics.median(r["cpu"] for r in rounds)
    wall = statistics.median(r["wall"] for r in rounds)
    goal = GOAL_CPU * args.probes / 100000
    print(f"machine: {machine()}; {args.probes} probes, median of {args.rounds} rounds")
    report([
        ("load_config CPU", f"{cpu:.2f} s", f"< {goal:.2f} s", cpu < goal),
        ("load_config wall", f"{wall:.2f} s", "", None),
        ("CPU per 1,000 probes", f"{1000 * cpu / args.probes * 1000:.1f} ms", "", None),
    ])
    if ready:
        report([("serve: start to /-/ready", f"{statistics.median(r['ready'] for r in ready):.2f} s",
                 "< 5 s", statistics.median(r["ready"] for r in ready) < 5.0),
                ("serve: CPU by then", f"{statistics.median(r['cpu'] for r in ready):.2f} s", "", None)])
    path = save("load", {"machine": machine(), "probes": args.probes, "rounds": rounds,
                         "cpu_median_s": cpu, "wall_median_s": wall, "goal_cpu_s": goal,
                         "ready": ready})
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
