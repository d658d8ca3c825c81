"""End to end: probewatch -> Prometheus (shipped rules) -> Alertmanager (shipped
config and templates) -> SMTP (STARTTLS and AUTH), all real, all on loopback.

Exporter A probes "shop" (group web, failures: 3, renotify: 10 - remind every
10 failures), a tcp server the test closes and reopens, and "flaky" (group database, failures: 3), a server whose reply
is wrong once every 12 runs: 2 failures per window at most, never an email.
Exporter B probes "orders-db" (group database, failures: 1), which is down
from the start; the test kills B. Probes run and Prometheus scrapes and
evaluates every second; the window is 20s, set where users set it.

One scenario, run once (about 80 s, most of it ProbeExporterDown's 1m `for`),
with a test per thing a user would notice.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.deploy.alerting_stack import (
    RULES,
    Alertmanager,
    Mail,
    Prometheus,
    SmtpServer,
    alertmanager,
    alertmanager_config,
    logs_of,
    prometheus,
    with_window,
)
from tests.exporter.exporter_process import Running, serve
from tests.probes.servers import TcpServer, closed_port
from tests.support import wait_for

WINDOW = "20s"
PERIOD = 1.0
FLAKY_EVERY = 12  # runs between flaky's failures: 2 at most within WINDOW (+1 evaluation)
RENOTIFY_FAILURES = 10  # shop's renotify label: "every 10 failures" of a 1s probe
RENOTIFY = RENOTIFY_FAILURES * PERIOD
GROUP_INTERVAL = 1.0
# The advice of alertmanager.yml: N x period - group_interval / 2.
REPEAT_INTERVAL = RENOTIFY - GROUP_INTERVAL / 2
GROUP_WAIT = 5.0  # the shipped value, kept

WEB_TEAM = frozenset({"web-team@example.invalid", "web-lead@example.invalid"})
DATABASE_TEAM = frozenset({"dba@example.invalid", "dba-lead@example.invalid"})
ADMINS = frozenset({"probewatch-admins@example.invalid", "ops@example.invalid"})
SMTP_LOGIN = "probewatch@example.invalid"  # smtp_auth_username in the shipped config


class ReusableServer(socketserver.TCPServer):
    allow_reuse_address = True  # reopen on the same port at once


class ReopenableServer:
    """A loopback tcp server that accepts and closes; closed, connections are
    refused; reopened, it listens on the same port again."""

    def __init__(self) -> None:
        self.port = 0
        self.server: ReusableServer | None = None
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        self.server = ReusableServer(("127.0.0.1", self.port), socketserver.BaseRequestHandler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


def flaky_answer(count: Iterator[int]) -> Callable[[socket.socket], bytes]:
    """OK, except BAD once every FLAKY_EVERY connections (from the 5th)."""
    def answer(conn: socket.socket) -> bytes:
        conn.sendall(b"BAD\n" if next(count) % FLAKY_EVERY == 5 else b"OK\n")
        return b""
    return answer


def probe_config(probes: list[dict[str, object]]) -> str:
    return yaml.safe_dump({"defaults": {"period": f"{PERIOD:g}s", "timeout": "500ms"},
                           "probes": probes}, sort_keys=False)


@dataclass
class Outcome:
    """What the scenario saw, for the tests to judge."""

    mails: list[Mail] = field(default_factory=list)
    shop_port: int = 0
    shop_third_failure: float = 0.0
    shop_failures_at_mail: dict[float, float] = field(default_factory=dict)  # mail time -> count
    shop_reopened: float = 0.0
    exporter_b: str = ""
    killed_b: float = 0.0
    flaky_window_max: float | None = None
    flaky_failures: float | None = None
    orders_db_inhibited: bool = False
    logs: str = ""

    def describe(self) -> str:
        return describe(self.mails, self.logs)

    def to(self, recipients: frozenset[str], subject_part: str = "") -> list[Mail]:
        return [m for m in self.mails if m.recipients == recipients and subject_part in m.subject]


def shop_failures(exporter: Running) -> tuple[float, float]:
    """(failures_total, last run's end time) of shop, from one scrape and the status API."""
    failures = exporter.value("probewatch_probe_failures_total", probe="shop")
    assert failures is not None
    _, body, _ = exporter.get("/api/v1/probes/shop")
    last = json.loads(body)["runs"][-1]
    ended = datetime.fromisoformat(last["started"].replace("Z", "+00:00")).timestamp()
    return failures, ended + last["latency_seconds"]


def third_failure_time(exporter: Running) -> float:
    """Poll until shop has failed 3 times; the 3rd failed run's end time."""
    def seen() -> float | None:
        failures, ended = shop_failures(exporter)
        assert failures <= 3, "polling fell behind the probe: cannot time the 3rd failure"
        return ended if failures == 3 else None
    return wait_for(seen, timeout=10, interval=0.05, what="shop's 3rd failure")


def failures_in_text(mail: Mail) -> int:
    """The "N so far" of a probe email."""
    match = re.search(r"^  Failures: +(\d+) so far,", mail.text, re.MULTILINE)
    assert match, mail.text
    return int(match.group(1))


def orders_db_inhibited(am: Alertmanager) -> bool:
    return any(a["labels"].get("alertname") == "ProbeFailing"
               and a["labels"].get("probe") == "orders-db"
               and a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
               for a in am.alerts())


def run_scenario(workdir: Path) -> Outcome:
    outcome = Outcome()
    password = secrets.token_urlsafe(16)
    password_file = workdir / "smtp-password"
    password_file.write_text(password)
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer(workdir, SMTP_LOGIN, password).running())
        shop = ReopenableServer()
        shop.open()
        stack.callback(shop.close)
        flaky = TcpServer(flaky_answer(itertools.count(1)))
        stack.callback(flaky.close)
        outcome.shop_port = shop.port

        config_a, config_b = workdir / "a.yml", workdir / "b.yml"
        config_a.write_text(probe_config([
            {"name": "shop", "kind": "tcp", "target": f"127.0.0.1:{shop.port}",
             "failures": 3, "labels": {"group": "web", "renotify": str(RENOTIFY_FAILURES)}},
            {"name": "flaky", "kind": "tcp", "target": f"127.0.0.1:{flaky.port}",
             "failures": 3, "labels": {"group": "database"}, "tcp": {"expect": "OK"}},
        ]))
        config_b.write_text(probe_config([
            {"name": "orders-db", "kind": "tcp", "target": f"127.0.0.1:{closed_port()}",
             "failures": 1, "labels": {"group": "database"}},
        ]))
        exporter_a = stack.enter_context(serve(config_a, f"--log.file={workdir / 'exporter-a.log'}"))
        exporter_b = stack.enter_context(serve(config_b, f"--log.file={workdir / 'exporter-b.log'}"))
        outcome.exporter_b = exporter_b.url.removeprefix("http://")

        am = stack.enter_context(alertmanager(workdir, alertmanager_config(
            smtp, password_file, {
                "root": {"group_wait": f"{GROUP_WAIT:g}s", "group_interval": f"{GROUP_INTERVAL:g}s"},
                "web-team": {"repeat_interval": f"{REPEAT_INTERVAL * 1000:.0f}ms"},
            })))
        rules = with_window(RULES.read_text(encoding="utf-8"), WINDOW)
        prom: Prometheus = stack.enter_context(prometheus(
            workdir, rules, [exporter_a.url.removeprefix("http://"), outcome.exporter_b], am.url))
        try:
            wait_for(lambda: prom.value('count(up{job="probewatch"} == 1)') == 2, 30,
                     what="Prometheus scraping both exporters")
            wait_for(lambda: shop_failures(exporter_a)[0] == 0 and exporter_a.value(
                "probewatch_probe_up", probe="shop") == 1, 10, what="shop up")

            # B's probe fails from the start: its email comes first; then B dies.
            smtp.wait(lambda m: m.recipients == DATABASE_TEAM and "orders-db" in m.subject,
                      timeout=30, what="orders-db's firing email")
            os.killpg(exporter_b.proc.pid, signal.SIGKILL)
            outcome.killed_b = time.time()

            shop.close()
            outcome.shop_third_failure = third_failure_time(exporter_a)
            for count in (1, 2):
                firing = smtp.wait(lambda m: m.recipients == WEB_TEAM and "FIRING" in m.subject,
                                   count=count, timeout=40, what="shop's firing email and reminder")
                # What the exporter counts as the email arrives, to judge its figures.
                outcome.shop_failures_at_mail[firing[-1].received] = shop_failures(exporter_a)[0]
            assert len(firing) == 2
            shop.open()
            outcome.shop_reopened = time.time()
            smtp.wait(lambda m: m.recipients == WEB_TEAM and "RESOLVED" in m.subject,
                      timeout=20, what="shop's resolved email")

            outcome.orders_db_inhibited = wait_for(lambda: orders_db_inhibited(am), 60,
                                                   what="orders-db's alert inhibited")
            smtp.wait(lambda m: m.recipients == ADMINS, timeout=outcome.killed_b + 90 - time.time(),
                      what="ProbeExporterDown's email")
            time.sleep(2)  # anything that would wrongly follow has had its chance
            outcome.flaky_window_max = prom.value(
                'max_over_time(probewatch:probe_failures:window{probe="flaky"}[5m])')
            outcome.flaky_failures = exporter_a.value("probewatch_probe_failures_total",
                                                      probe="flaky")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe(smtp.received(), logs_of(workdir))}") from None
        finally:
            outcome.mails = smtp.received()
            outcome.logs = logs_of(workdir)
    return outcome


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    workdir = tmp_path_factory.mktemp("alerting")
    result = run_scenario(workdir)
    yield result


def describe(mails: list[Mail], logs: str) -> str:
    listed = "\n".join(f"  {m.received:.1f} {sorted(m.recipients)} {m.subject}" for m in mails)
    return f"mails:\n{listed}\n{logs}"


def test_the_web_list_gets_exactly_one_firing_email_with_name_code_and_message(
        outcome: Outcome) -> None:
    first, *_ = outcome.to(WEB_TEAM, "FIRING")
    assert first.subject.startswith("[probewatch FIRING] ProbeFailing shop (code -1) - "), outcome.describe()
    before_reminder = [m for m in outcome.to(WEB_TEAM, "FIRING")
                       if m.received < first.received + REPEAT_INTERVAL]
    assert before_reminder == [first], outcome.describe()
    for line in ("  Probe:          shop (tcp)",
                 f"  Target:         127.0.0.1:{outcome.shop_port}",
                 "  Group:          web",
                 "  Return code:    -1",
                 "  Last failure:   refused",
                 f"  Message:        connection to 127.0.0.1:{outcome.shop_port} refused"):
        assert line in first.text.splitlines(), first.text
    assert "<td>shop (tcp)</td>" in first.html
    assert f"connection to 127.0.0.1:{outcome.shop_port} refused" in first.html


def test_the_first_email_follows_the_third_failure_within_seconds(outcome: Outcome) -> None:
    first = outcome.to(WEB_TEAM, "FIRING")[0]
    delay = first.received - outcome.shop_third_failure
    print(f"\ntime from the 3rd failure to the email: {delay:.1f}s "
          f"(scrape and evaluation 1s, group_wait {GROUP_WAIT:g}s)")
    assert GROUP_WAIT - 1 <= delay <= GROUP_WAIT + 5, outcome.describe()


def test_a_reminder_follows_after_n_failures_and_says_which_it_is(outcome: Outcome) -> None:
    """Every N failures, to within one evaluation (and one group_interval tick), with
    shipped advice (repeat_interval = N x period - group_interval / 2); the reminder
    is numbered and its count is the exporter's at sending time, not the first email's."""
    first, second, *_ = outcome.to(WEB_TEAM, "FIRING")
    gap = second.received - first.received
    print(f"\nfirst email to reminder: {gap:.2f}s (every {RENOTIFY_FAILURES} failures of a "
          f"{PERIOD:g}s probe; group_interval {GROUP_INTERVAL:g}s)")
    assert RENOTIFY - GROUP_INTERVAL / 2 <= gap <= RENOTIFY + GROUP_INTERVAL, outcome.describe()
    assert second.subject.startswith("[probewatch FIRING] ProbeFailing shop (code -1) reminder 1 - "), \
        second.subject
    assert "  Reminder:       1 (every 10 failures)" in second.text.splitlines(), second.text
    assert "Reminder:" not in first.text and "reminder" not in first.subject
    assert first.subject != second.subject  # its date is the time of its figures
    counted = {m.received: failures_in_text(m) for m in (first, second)}
    for received, so_far in counted.items():
        exporter_count = outcome.shop_failures_at_mail[received]
        # The figures of the last evaluation before sending: one run (1s) apart at most,
        # plus the scrape before that evaluation and the probe's own jitter.
        assert abs(so_far - exporter_count) <= 2, (so_far, exporter_count, outcome.describe())
    assert abs((counted[second.received] - counted[first.received]) - RENOTIFY_FAILURES) <= 2


def test_a_resolved_email_follows_recovery(outcome: Outcome) -> None:
    (resolved,) = outcome.to(WEB_TEAM, "RESOLVED")
    assert resolved.subject.startswith("[probewatch RESOLVED] ProbeFailing shop - "), resolved.subject
    assert "RESOLVED: Probe shop (tcp 127.0.0.1:" in resolved.text
    # 2 successes in a row, then evaluation, then the next group_interval tick.
    assert resolved.received - outcome.shop_reopened <= 2 * PERIOD + 1 + GROUP_INTERVAL + 3
    assert "background:#2e7d32" in resolved.html


def test_a_probe_failing_fewer_than_n_times_per_window_never_emails(outcome: Outcome) -> None:
    assert outcome.flaky_window_max == 2, "the flaky probe never reached N-1 failures in a window"
    assert outcome.flaky_failures is not None and outcome.flaky_failures >= 4
    assert not [m for m in outcome.mails if "flaky" in m.subject or "flaky" in m.text], outcome.describe()


def test_killing_the_exporter_sends_exporter_down_and_no_probe_email(outcome: Outcome) -> None:
    (down,) = outcome.to(ADMINS)
    assert down.subject.startswith(f"[probewatch FIRING] ProbeExporterDown {outcome.exporter_b} - ")
    assert f"Prometheus cannot scrape {outcome.exporter_b} (job probewatch)." in down.text
    assert 60 <= down.received - outcome.killed_b <= 60 + GROUP_WAIT + 10
    # orders-db emailed once when it failed, before the kill, and never again.
    database = outcome.to(DATABASE_TEAM)
    assert len(database) == 1 and database[0].received < outcome.killed_b, outcome.describe()
    assert database[0].subject.startswith("[probewatch FIRING] ProbeFailing orders-db (code -1)")
    # failures: 1: the first email was evaluated from the scrape that saw the
    # failure, and still carries its reason and message.
    assert "  Last failure:   refused" in database[0].text.splitlines(), database[0].text
    assert "  Message:        connection to 127.0.0.1:" in database[0].text, database[0].text
    # Alertmanager holds its alert (ProbeUnwatched is the inhibition's source).
    assert outcome.orders_db_inhibited
    assert not [m for m in outcome.mails if "ProbeUnwatched" in m.subject]


def test_every_email_went_through_starttls_and_authentication(outcome: Outcome) -> None:
    # orders-db firing; shop firing, reminder, resolved; ProbeExporterDown.
    assert len(outcome.mails) == 5, outcome.describe()
    for mail in outcome.mails:
        assert mail.tls and mail.login == SMTP_LOGIN, mail
