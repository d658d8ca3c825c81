"""The shipped Alertmanager config and email templates, checked with amtool.

Routes: every route is exercised with `amtool config routes test
--verify.receivers`. Templates: rendered with `amtool template render` against
the sample alerts beside this file, and the text an operator reads is checked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, require_binary

CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates" / "*.tmpl"
SAMPLES = Path(__file__).parent


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("amtool"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_config_is_valid_and_finds_its_templates() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 2 inhibit rules" in result.stdout
    assert " - 6 receivers" in result.stdout
    assert " - 1 templates" in result.stdout


ROUTES = [
    # (alert labels, receivers in routing order)
    ({"alertname": "ProbeFailing", "probe": "shop", "group": "web"}, ["web-team"]),
    ({"alertname": "ProbeFailing", "probe": "orders", "group": "database"}, ["database-team"]),
    ({"alertname": "ProbeFailing", "probe": "shop", "group": "web", "severity": "critical"},
     ["oncall", "web-team"]),
    ({"alertname": "ProbeFailing", "probe": "core", "severity": "critical"}, ["oncall"]),
    ({"alertname": "ProbeFailing", "probe": "misc", "group": "other"}, ["catch-all"]),
    ({"alertname": "ProbeFailing", "probe": "misc"}, ["catch-all"]),
    ({"alertname": "ProbeCertificateExpiring", "probe": "shop", "group": "web", "severity": "warning"},
     ["web-team"]),
    ({"alertname": "ProbeExporterDown", "instance": "a.example.invalid:9637", "severity": "critical"},
     ["probewatch-admins"]),
    ({"alertname": "ProbewatchConfigReloadFailed", "severity": "warning"}, ["probewatch-admins"]),
    ({"alertname": "ProbewatchOverloaded", "severity": "warning"}, ["probewatch-admins"]),
    ({"alertname": "ProbeUnwatched", "probe": "shop", "group": "web", "severity": "none"}, ["silent"]),
]


@pytest.mark.parametrize(("labels", "receivers"), ROUTES, ids=lambda v: str(v))
def test_route_reaches_its_recipient_lists(labels: dict[str, str], receivers: list[str]) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}",
        f"--verify.receivers={','.join(receivers)}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ",".join(receivers)


def test_a_wrong_receiver_is_caught() -> None:
    """--verify.receivers really compares: the route tests above cannot pass vacuously."""
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                    "--verify.receivers=catch-all", "alertname=ProbeFailing", "group=web")
    assert result.returncode != 0


def test_every_receiver_is_a_list_that_sends_resolved_and_every_route_is_tested() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    tested = {r for _, receivers in ROUTES for r in receivers}
    for receiver in config["receivers"]:
        assert receiver["name"] in tested, f"no route test reaches {receiver['name']}"
        if receiver["name"] == "silent":
            assert set(receiver) == {"name"}, "the inhibition-only receiver must send nothing"
            continue
        for email in receiver["email_configs"]:
            assert email["send_resolved"] is True
            assert len(email["to"].split(",")) >= 2, f"{receiver['name']}: a list has several addresses"
    assert config["global"]["smtp_require_tls"] is True
    assert config["global"]["smtp_auth_password_file"]


def render(template: str, sample: str, kind: str = "text") -> str:
    result = amtool(
        "template", "render", f"--template.glob={TEMPLATES}",
        f"--template.text={{{{ template \"probewatch.email.{template}\" . }}}}",
        f"--template.data={SAMPLES / sample}", f"--template.type={kind}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_firing_probe_email() -> None:
    subject = render("subject", "probe_firing.json").strip()
    assert subject == "[probewatch FIRING] ProbeFailing shop-front (code -1) - 2026-03-01 10:15:30 UTC"
    text = render("text", "probe_firing.json")
    for line in (
        "FIRING: Probe shop-front (tcp shop.example.invalid:443) is failing",
        "  Probe:          shop-front (tcp)",
        "  Target:         shop.example.invalid:443",
        "  Group:          web",
        "  Severity:       critical",
        "  Return code:    -1",
        "  Date:           failing since 2026-03-01 10:15:30 UTC",
        "  Failures:       3 within the window (threshold 3), 3 in a row now",
        "  Last failure:   refused",
        "  Message:        connect to shop.example.invalid:443: <refused> & closed",
        "  Status page:    http://exporter.example.invalid:9637/",
        "  Prometheus:     http://prometheus.example.invalid:9090/graph?g0.expr=ProbeFailing",
        "Alertmanager: http://alertmanager.example.invalid:9093",
    ):
        assert line in text.splitlines(), f"missing {line!r} in:\n{text}"


def test_firing_probe_email_html_escapes_the_message() -> None:
    html = render("html", "probe_firing.json", kind="html")
    assert "<td>shop-front (tcp)</td>" in html
    assert "<td>-1</td>" in html
    assert "connect to shop.example.invalid:443: &lt;refused&gt; &amp; closed" in html
    assert "<refused>" not in html
    assert '<a href="http://exporter.example.invalid:9637/">status page</a>' in html
    assert '<a href="http://prometheus.example.invalid:9090/graph?g0.expr=ProbeFailing">Prometheus</a>' in html
    assert "background:#c62828" in html  # red header while firing


def test_resolved_probe_email() -> None:
    subject = render("subject", "probe_resolved.json").strip()
    assert subject == "[probewatch RESOLVED] ProbeFailing orders-db - 2026-03-01 10:21:45 UTC"
    text = render("text", "probe_resolved.json")
    assert text.startswith(
        "RESOLVED: Probe orders-db (command pg_isready -h db.example.invalid) succeeded again\n")
    assert ("  Date:           resolved 2026-03-01 10:21:45 UTC"
            " (failing since 2026-03-01 10:15:30 UTC)") in text
    assert "  Message:        db.example.invalid:5432 - no response" in text
    assert "  Severity:       -" in text
    html = render("html", "probe_resolved.json", kind="html")
    assert "background:#2e7d32" in html  # green header once resolved
    assert "succeeded again" in html


def test_exporter_down_email_lists_each_exporter() -> None:
    subject = render("subject", "exporter_down.json").strip()
    assert subject == "[probewatch FIRING] ProbeExporterDown (2 alerts) - 2026-03-01 11:00:00 UTC"
    text = render("text", "exporter_down.json")
    assert "FIRING: probewatch exporter exporter.example.invalid:9637 is down" in text
    assert "FIRING: probewatch exporter exporter-2.example.invalid:9637 is down" in text
    assert ("  Labels:         alertname=ProbeExporterDown instance=exporter.example.invalid:9637"
            " job=probewatch severity=critical") in text
    assert "Probe:" not in text


def test_a_reminder_says_which_it_is_with_fresh_figures() -> None:
    """Moniteur's repeat count: reminder k, failures so far, and the time of those
    figures (not the start of the alert, which every email of the thread shares)."""
    subject = render("subject", "probe_reminder.json").strip()
    assert subject == ("[probewatch FIRING] ProbeFailing shop-front (code -1) reminder 2"
                       " - 2026-03-01 10:36:30 UTC")
    text = render("text", "probe_reminder.json")
    for line in (
        "  Date:           failing since 2026-03-01 10:15:30 UTC, figures of 2026-03-01 10:36:30 UTC",
        "  Reminder:       2 (every 20 failures)",
        "  Failures:       43 so far, 21 within the window (threshold 3), 43 in a row now",
    ):
        assert line in text.splitlines(), f"missing {line!r} in:\n{text}"
    html = render("html", "probe_reminder.json", kind="html")
    assert "<tr><td>Reminder</td><td>2 (every 20 failures)</td></tr>" in html


def test_the_first_email_is_not_a_reminder() -> None:
    assert "reminder" not in render("subject", "probe_firing.json")
    assert "Reminder:" not in render("text", "probe_firing.json")
