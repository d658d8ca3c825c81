"""Draw docs/images/performance.png from bench_tcp.py cpu's results.

    python bench/bench_tcp.py cpu --probes 1000,5000,10000,20000   # writes bench/results/tcp_cpu_N.json
    python bench/plot.py [--out docs/images/performance.png]

Two panels against the probe count (tcp probes at a 10 s period, so the rate is
probes / 10 a second): CPU per run of probewatch, blackbox_exporter and the
floor (a bare asyncio connect), medians of the rounds; and how late results
came, p99: probewatch's scheduler lag, and for blackbox the time from the
driver's slot to the /probe answer.  Needs matplotlib, a bench-only
dependency: ``pip install -e '.[bench]'`` (or ``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def load() -> list[dict[str, Any]]:
    runs = []
    for path in sorted(RESULTS.glob("tcp_cpu_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"{path}: skipped ({exc})", file=sys.stderr)
            continue
        if "median_probewatch_us" in data:
            runs.append(data)
    return sorted(runs, key=lambda d: d["probes"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "performance.png")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/plot.py needs matplotlib: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    runs = load()
    if not runs:
        print(f"no results in {RESULTS}: run python bench/bench_tcp.py cpu --probes 1000,5000,10000,20000",
              file=sys.stderr)
        return 2
    probes = [r["probes"] for r in runs]
    fig, (cpu, lag) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu.plot(probes, [r["median_blackbox_us"] for r in runs], "s-", color="#c0392b", label="blackbox_exporter")
    cpu.plot(probes, [r["median_probewatch_us"] for r in runs], "o-", color="#2471a3", label="probewatch")
    cpu.plot(probes, [r["median_floor_us"] for r in runs], "^--", color="#7f8c8d",
             label="floor: bare asyncio connect")
    for r in runs:
        cpu.annotate(f"{r['blackbox_over_probewatch']:.1f}x", (r["probes"], r["median_probewatch_us"]),
                     textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8, color="#2471a3")
    for r in runs:
        reached = sorted(r.get("blackbox_runs_per_s", [r["rate_per_s"]]))[len(r.get("blackbox_runs_per_s", [0])) // 2]
        if reached < 0.8 * r["rate_per_s"]:  # the driver could not hold the rate: say so on the point
            cpu.annotate(f"driven at {reached:.0f}/s", (r["probes"], r["median_blackbox_us"]),
                         textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7, color="#c0392b")
    cpu.set_ylim(bottom=0)
    cpu.set_title("CPU per tcp probe run (median of rounds)")
    cpu.set_ylabel("µs of CPU per run")
    lag.plot(probes, [r["median_blackbox_answer_p99_ms"] for r in runs], "s-", color="#c0392b",
             label="blackbox: slot to /probe answer, p99")
    lag.plot(probes, [r["median_probewatch_lag_p99_ms"] for r in runs], "o-", color="#2471a3",
             label="probewatch: scheduler lag, p99")
    lag.axhline(25, color="#2471a3", linestyle=":", linewidth=1, label="goal at 10,000 probes: 25 ms")
    lag.set_yscale("log")
    lag.set_title("How late results come, p99")
    lag.set_ylabel("ms")
    for ax in (cpu, lag):
        ax.set_xlabel("tcp probes at a 10 s period")
        ax.set_xticks(probes)
        ax.set_xticklabels([f"{p // 1000}k" if p >= 1000 else str(p) for p in probes])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    first = runs[0]
    fig.suptitle(f"{first['machine']}; {first['blackbox'].split(' (')[0]}; loopback; "
                 f"{first['date'][:10]}; shared, noisy machine", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
