"""The shipped rules at scale: a real Prometheus scraping N tcp probes (issue 11, goal 6).

    python bench/bench_rules.py [--probes 10000 50000] [--failing 0.01] [--period 30]
                                [--rounds 3] [--round-seconds 60] [--workers N]
                                [--baseline REV | --compare REV]

For each probe count: local listeners, the exporter with N tcp probes (a
share of them pointed at a closed loopback port, so they fail and alert),
and Prometheus with deploy/prometheus/rules.yml, scraping and evaluating every
15s, on ports chosen at run time. After a warm-up long enough for the failing
probes to fire, it reads prometheus_rule_group_last_duration_seconds (the
group's evaluation time) from Prometheus' own /metrics at every evaluation,
for --rounds rounds, and reports the median of the round medians beside the
goal (< 0.5 s at 10,000 probes, < 2 s at 50,000). --compare REV measures the
rules and exporter of git revision REV and of this tree in the same run, one
after the other at each probe count, and reports their ratio; --baseline REV
measures REV alone. Bounded in time; stops what it started. Figures go to
bench/results/NAME.json (--name, default rules).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, AcceptListeners, Exporter, cpu_seconds, free_port, machine, report, rss_bytes, save

GOALS = {10000: 0.5, 50000: 2.0}
INTERVAL = 15.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def query(prom: str, expr: str) -> list[dict[str, object]]:
    body = get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return list(json.loads(body)["data"]["result"])


def own_metric(prom: str, name: str) -> float | None:
    for line in get(prom + "/metrics").decode().splitlines():
        if line.startswith(name + "{") and 'rule_group="' in line and ';probewatch"' in line:
            return float(line.rpartition(" ")[2])
    return None


class Prometheus:
    def __init__(self, workdir: Path, target: str, tree: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        shutil.copy(tree / "deploy" / "prometheus" / "rules.yml", workdir / "rules.yml")
        config.write_text(
            f"global: {{scrape_interval: {INTERVAL:g}s, evaluation_interval: {INTERVAL:g}s,"
            f" scrape_timeout: {INTERVAL:g}s}}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            f"  - {{job_name: probewatch, static_configs: [{{targets: ['{target}']}}]}}\n")
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("prometheus is missing (Debian package prometheus)")
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                get(self.url + "/-/ready", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"prometheus exited; see {workdir / 'prometheus.log'}") from None
                time.sleep(0.5)
        raise SystemExit("prometheus did not become ready in 60s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class TreeExporter(Exporter):
    """The exporter of a source tree (this one or a --baseline/--compare revision), this Python."""

    def __init__(self, config: Path, tree: Path, workers: int) -> None:
        super().__init__(config, ready_timeout=300.0)
        self.tree, self.workers = tree, workers

    def __enter__(self) -> Exporter:
        extra = [f"--workers={self.workers}"] if self.workers > 1 else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "serve", f"--config.file={self.config}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warning",
             "--config.watch-interval=0", *extra],
            cwd=self.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(self.tree)})
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"exporter of {self.tree} exited during start") from None
                time.sleep(0.5)
        raise SystemExit(f"exporter of {self.tree} did not become ready in {self.ready_timeout:g}s")


def write_config(path: Path, probes: int, failing: int, period: float, ports: list[int]) -> None:
    dead = closed_port()
    lines = [f"defaults: {{period: {period:g}s, timeout: 2s}}", "probes:"]
    for i in range(probes):
        if i < failing:  # every 15s, so they fire within the warm-up whatever --period is
            lines.append(f"  - {{name: tcp-{i:05d}, kind: tcp, target: '127.0.0.1:{dead}', period: 15s}}")
        else:
            lines.append(f"  - {{name: tcp-{i:05d}, kind: tcp, target: '127.0.0.1:{ports[i % len(ports)]}'}}")
    path.write_text("\n".join(lines) + "\n")


def run_one(probes: int, args: argparse.Namespace, ports: list[int], tree: Path) -> dict[str, object]:
    failing = int(probes * args.failing)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "bench.yml"
        write_config(config, probes, failing, args.period, ports)
        with TreeExporter(config, tree, args.workers) as exporter:
            prom = Prometheus(work, f"127.0.0.1:{exporter.port}", tree)
            try:
                # Every probe has run, and the failing ones failed 3 times and fired.
                warmup = max(3 * 15 + 3 * INTERVAL, args.period + 2 * INTERVAL)
                which = "this tree" if tree == ROOT else "baseline"
                print(f"{probes} probes ({failing} failing), {which}: warming up {warmup:.0f}s ...", flush=True)
                time.sleep(warmup)
                cpu0 = cpu_seconds(prom.proc.pid)
                t0 = time.monotonic()
                load_before = os.getloadavg()[0]
                rounds: list[float] = []
                seen: list[float] = []
                for _ in range(args.rounds):
                    durations: list[float] = []
                    last_eval = None
                    end = time.monotonic() + args.round_seconds
                    while time.monotonic() < end:
                        stamp = own_metric(prom.url, "prometheus_rule_group_last_evaluation_timestamp_seconds")
                        if stamp is not None and stamp != last_eval:
                            last_eval = stamp
                            value = own_metric(prom.url, "prometheus_rule_group_last_duration_seconds")
                            if value is not None:
                                durations.append(value)
                        time.sleep(1.0)
                    if durations:
                        rounds.append(statistics.median(durations))
                        seen += durations
                prom_cpu = (cpu_seconds(prom.proc.pid) - cpu0) / (time.monotonic() - t0)
                firing = query(prom.url, 'count(ALERTS{alertname="ProbeFailing",alertstate="firing"})')
                scraped = query(prom.url, 'scrape_samples_scraped{job="probewatch"}')
                samples = own_metric(prom.url, "prometheus_rule_group_last_evaluation_samples")
                return {
                    "probes": probes, "failing": failing,
                    "firing_alerts": int(float(firing[0]["value"][1])) if firing else 0,  # type: ignore[index]
                    "series_scraped": int(float(scraped[0]["value"][1])) if scraped else 0,  # type: ignore[index]
                    "series_per_probe": (round(float(scraped[0]["value"][1]) / probes, 2)  # type: ignore[index]
                                         if scraped else None),
                    "rule_group_seconds_median": round(statistics.median(rounds), 4) if rounds else None,
                    "rule_group_seconds_rounds": [round(r, 4) for r in rounds],
                    "rule_group_seconds_max": round(max(seen), 4) if seen else None,
                    "rule_samples_per_evaluation": samples,
                    "prometheus_cpu_percent_of_one_core": round(prom_cpu * 100, 1),
                    "prometheus_rss_mib": round(rss_bytes(prom.proc.pid) / 2**20, 1),
                    # 1-minute load average of the machine as the rounds began and ended
                    "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
            finally:
                prom.stop()


def checkout(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` (exporter and rules), unpacked under ``into``."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--failing", type=float, default=0.01, help="share of probes that fail (alert)")
    parser.add_argument("--period", type=float, default=60.0,
                        help="period of the probes that succeed, in seconds (the failing ones run every 15s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=60.0)
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="exporter worker processes (--workers)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baseline", metavar="REV",
                       help="measure the exporter and rules of git revision REV instead (e.g. main)")
    which.add_argument("--compare", metavar="REV",
                       help="measure git revision REV and this tree in the same run, side by side")
    parser.add_argument("--name", default="rules", help="results file: bench/results/NAME.json")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    other = args.baseline or args.compare
    trees = {"this tree": ROOT}
    if other:
        rev_tree = checkout(other, Path(scratch.name))
        trees = {other: rev_tree} if args.baseline else {other: rev_tree, "this tree": ROOT}

    results: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    with AcceptListeners(args.listeners) as listeners:
        for probes in args.probes:
            for name, tree in trees.items():
                results[name].append(run_one(probes, args, listeners.ports, tree))
                print(name, json.dumps(results[name][-1]), flush=True)
    load = os.getloadavg()
    print(f"machine: {machine()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Prometheus scrapes "
          f"and evaluates every {INTERVAL:g}s, probes run every {args.period:g}s")
    rows = []
    for name, runs in results.items():
        for r in runs:
            goal = GOALS.get(int(r["probes"]))  # type: ignore[call-overload]
            value = r["rule_group_seconds_median"]
            rows.append((f"{name}: rule group, {r['probes']} probes ({r['firing_alerts']} firing)",
                         f"{value} s", f"< {goal} s" if goal else "-",
                         None if goal is None or value is None else float(value) < goal))  # type: ignore[arg-type]
    report(rows)
    ratios = {}
    if args.compare:
        for old, new in zip(results[args.compare], results["this tree"], strict=True):
            before, after = old["rule_group_seconds_median"], new["rule_group_seconds_median"]
            if before and after:
                ratios[str(new["probes"])] = round(float(before) / float(after), 2)  # type: ignore[arg-type]
                print(f"{new['probes']} probes: {args.compare} {before} s, this tree {after} s: "
                      f"{ratios[str(new['probes'])]}x")
    record: dict[str, object] = {
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        "load_average_at_end": [round(x, 2) for x in load],
        "revision": args.baseline or "this tree", "failing_share": args.failing,
        "exporter_workers": args.workers, "runs": results[args.baseline or "this tree"]}
    if args.compare:
        record.update({"baseline_revision": args.compare, "baseline_runs": results[args.compare],
                       "speedup_by_probes": ratios})
    path = save(args.name, record)
    scratch.cleanup()
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
