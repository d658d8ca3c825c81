"""The shipped rules with two exporter replicas running the same probes (HA mode).

One outage must make one alert, so one email: the replicas' views of a probe
are merged into a single alert without their instance and pod labels, and a
replica that goes away costs one ProbeExporterDown, nothing more. Each case is
a promtool unit test against deploy/prometheus/rules.yml with the labels
prometheus-operator puts on series scraped through the ServiceMonitor.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT, require_binary

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
STEP = 15  # seconds between scrapes; the probes run once per scrape
SAMPLES = 49  # 12 minutes
SERVICE_MONITOR_LABELS = {"job": "probewatch", "namespace": "probewatch", "service": "probewatch",
                          "endpoint": "http", "container": "probewatch"}
REPLICAS = {
    "a": {"instance": "a.example.invalid:9637", "pod": "probewatch-6d5f8-a"},
    "b": {"instance": "b.example.invalid:9637", "pod": "probewatch-6d5f8-b"},
}
PROBE = {"probe": "web", "kind": "tcp", "target": "web.example.invalid:80",
         "group": "web", "severity": "critical"}
PER_REPLICA = ("instance", "pod")


def selector(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def values(points: list[float], down_from: int | None) -> str:
    """Explicit samples; a replica that goes down stops (a stale marker) at ``down_from``."""
    if down_from is not None:
        return " ".join(f"{v:g}" for v in points[:down_from]) + " stale"
    return " ".join(f"{v:g}" for v in points)


def replica_series(replica: str, failing: bool, down_from: int | None = None,
                   cert_days: float | None = None) -> list[dict[str, str]]:
    """What Prometheus holds for one replica that runs the probe every scrape."""
    own = {**SERVICE_MONITOR_LABELS, **REPLICAS[replica]}
    probe = {**own, **PROBE}
    runs = [float(i + 1) for i in range(SAMPLES)]
    zeros = [0.0] * SAMPLES
    series = {
        "probewatch_probe_runs_total": runs,
        "probewatch_probe_failures_total": runs if failing else zeros,
        "probewatch_probe_consecutive_failures": runs if failing else zeros,
        "probewatch_probe_consecutive_successes": zeros if failing else runs,
        "probewatch_probe_up": [0.0 if failing else 1.0] * SAMPLES,
        "probewatch_probe_return_code": [-1.0 if failing else 0.0] * SAMPLES,
        "probewatch_probe_failure_threshold": [3.0] * SAMPLES,
    }
    out = [{"series": selector(name, probe), "values": values(points, down_from)}
           for name, points in series.items()]
    if failing:
        info = {**probe, "reason": "refused", "message": "connection refused"}
        out.append({"series": selector("probewatch_probe_failure_info", info),
                    "values": values([1.0] * SAMPLES, down_from)})
    if cert_days is not None:
        # notAfter is fixed; the test clock starts at 0.
        out.append({"series": selector("probewatch_probe_http_cert_expiry_timestamp_seconds", probe),
                    "values": values([cert_days * 86400] * SAMPLES, down_from)})
    out.append({"series": selector("probewatch_build_info", {**own, "version": "0.1.0"}),
                "values": values([1.0] * SAMPLES, down_from)})
    scrape_ok = [1.0 if down_from is None or i < down_from else 0.0 for i in range(SAMPLES)]
    out.append({"series": selector("up", own), "values": values(scrape_ok, None)})
    return out


def alert_labels(alertname: str, labels: dict[str, str]) -> str:
    return selector("ALERTS", {"alertname": alertname, "alertstate": "firing", **labels})


def merged_probe_alert(alertname: str, **rule_labels: str) -> dict[str, Any]:
    """The one alert both replicas' views of the probe must become."""
    labels = {**SERVICE_MONITOR_LABELS, **PROBE, **rule_labels}
    return {"labels": alert_labels(alertname, labels), "value": 1}


def exporter_down(replica: str) -> dict[str, Any]:
    labels = {**SERVICE_MONITOR_LABELS, **REPLICAS[replica], "severity": "critical"}
    return {"labels": alert_labels("ProbeExporterDown", labels), "value": 1}


def check(tmp_path: Path, series: list[dict[str, str]],
          expected: dict[int, dict[str, list[dict[str, Any]]]]) -> None:
    """Run promtool: at each eval time (seconds), each alert has exactly the expected instances."""
    promtool = require_binary("promtool")
    tests = [{"expr": f'ALERTS{{alertname="{name}",alertstate="firing"}}',
              "eval_time": f"{at}s", "exp_samples": samples}
             for at, by_alert in expected.items() for name, samples in by_alert.items()]
    unit = {"rule_files": [str(RULES)], "evaluation_interval": f"{STEP}s",
            "tests": [{"interval": f"{STEP}s", "input_series": series,
                       "promql_expr_test": tests}]}
    path = tmp_path / "ha_test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_replicas_see_the_probe_fail_one_alert(tmp_path: Path) -> None:
    series = replica_series("a", failing=True) + replica_series("b", failing=True)
    check(tmp_path, series, {
        300: {"ProbeFailing": [merged_probe_alert("ProbeFailing")], "ProbeExporterDown": []},
    })


def test_only_one_replica_sees_the_probe_fail_one_alert(tmp_path: Path) -> None:
    """A failure seen from one replica still alerts (once): no outage goes unreported."""
    series = replica_series("a", failing=True) + replica_series("b", failing=False)
    check(tmp_path, series, {
        300: {"ProbeFailing": [merged_probe_alert("ProbeFailing")]},
    })


def test_one_replica_down_while_the_probe_fails(tmp_path: Path) -> None:
    """The replica's outage is one ProbeExporterDown; the probe stays one alert throughout."""
    down_at = 8  # 2 minutes in
    series = (replica_series("a", failing=True, down_from=down_at)
              + replica_series("b", failing=True))
    check(tmp_path, series, {
        90: {"ProbeFailing": [merged_probe_alert("ProbeFailing")], "ProbeExporterDown": []},
        # Inside the rules' 5m grace for a's last samples, and after it.
        # Nothing holds the probe's alert back: the other replica still watches it.
        300: {"ProbeFailing": [merged_probe_alert("ProbeFailing")],
              "ProbeExporterDown": [exporter_down("a")], "ProbeUnwatched": []},
        570: {"ProbeFailing": [merged_probe_alert("ProbeFailing")],
              "ProbeExporterDown": [exporter_down("a")], "ProbeUnwatched": []},
    })


def test_one_replica_down_while_the_probe_is_fine(tmp_path: Path) -> None:
    """The other replica keeps probing: the outage is the exporter's alone."""
    series = (replica_series("a", failing=False, down_from=8)
              + replica_series("b", failing=False))
    check(tmp_path, series, {
        300: {"ProbeFailing": [], "ProbeExporterDown": [exporter_down("a")]},
        570: {"ProbeFailing": [], "ProbeExporterDown": [exporter_down("a")]},
    })


def test_both_replicas_see_the_certificate_expire_one_alert(tmp_path: Path) -> None:
    series = (replica_series("a", failing=False, cert_days=3)
              + replica_series("b", failing=False, cert_days=3))
    check(tmp_path, series, {
        # The rule holds for 10m before it fires.
        690: {"ProbeCertificateExpiring": [
            merged_probe_alert("ProbeCertificateExpiring", severity="warning")]},
    })
