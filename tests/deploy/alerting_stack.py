"""The alerting chain, run for real in tests: Prometheus with the shipped rules,
Alertmanager with the shipped config, and a loopback SMTP server (aiosmtpd)
that, like a real relay, requires STARTTLS and a password.

Every port is chosen at run time and every process is stopped by its PID
(tests/support.py). The shipped files are changed only where a test must:
the window, through the one expression users edit too (``with_window``);
the addresses; Alertmanager's timings and the SMTP server's certificate.
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support import ROOT, free_port, missing, process, require_binary, self_signed_certificate, wait_for

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_EXAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates"

# The one place the window is set (docs/alerting.md tells users to edit it).
WINDOW_EXPRESSION = "sum_over_time(probewatch:probe_failures:new[10m])"


def with_window(rules: str, window: str) -> str:
    """The rules text with the failure window changed where users change it."""
    if rules.count(WINDOW_EXPRESSION) != 1:
        raise ValueError(f"rules.yml must hold {WINDOW_EXPRESSION!r} exactly once")
    return rules.replace(WINDOW_EXPRESSION, WINDOW_EXPRESSION.replace("[10m]", f"[{window}]"))


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def is_ready(url: str, proc: Any, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}):\n{tail(log)}")
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextmanager
def serving(workdir: Path, name: str, argv: list[str]) -> Iterator[str]:
    """Run a Prometheus-family server on a free loopback port, logging to
    workdir/NAME.log, until it answers /-/ready; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"{name}.log"
    argv = [*argv, f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}/"]
    with log.open("w") as out, process(argv, stdout=out, stderr=out) as proc:
        wait_for(lambda: is_ready(url, proc, log), 30, what=f"{name} ready")
        yield url


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- SMTP -------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    received: float  # time.time() when the server accepted it
    recipients: frozenset[str]
    subject: str
    text: str
    html: str
    login: str  # who authenticated
    tls: bool  # delivered after STARTTLS


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS and AUTH; keeps every mail."""

    workdir: Path
    login: str
    password: str
    port: int = 0
    ca_file: Path = field(default=Path())
    mails: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def running(self) -> Iterator[SmtpServer]:
        cert, key = self_signed_certificate(self.workdir, common_name="probewatch test SMTP",
                                            prefix="smtp-")
        self.ca_file = cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        controller = Controller(
            self, hostname="127.0.0.1", port=self.port, tls_context=context,
            require_starttls=True, auth_required=True, authenticator=self.authenticate,
            # aiosmtpd's LOGIN prompts ("User Name") are not the usual "Username:",
            # which Alertmanager's LOGIN expects; offer PLAIN, as most relays do.
            auth_exclude_mechanism=["LOGIN"],
        )
        controller.start()
        try:
            yield self
        finally:
            controller.stop()

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == self.login
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)

        def body(kind: str) -> str:
            part = message.get_body((kind,))
            return str(part.get_content()) if part is not None else ""

        auth = session.auth_data
        mail = Mail(
            received=time.time(),
            recipients=frozenset(envelope.rcpt_tos),
            subject=str(message["Subject"]),
            text=body("plain"),
            html=body("html"),
            login=auth.login.decode() if isinstance(auth, LoginPassword) else "",
            tls=session.ssl is not None,
        )
        with self.lock:
            self.mails.append(mail)
        return "250 Message accepted for delivery"

    def received(self, where: Callable[[Mail], bool] = lambda m: True) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if where(m)]

    def wait(self, where: Callable[[Mail], bool], count: int = 1, timeout: float = 30.0,
             what: str = "mail") -> list[Mail]:
        def enough() -> list[Mail] | None:
            found = self.received(where)
            return found if len(found) >= count else None

        return wait_for(enough, timeout=timeout, interval=0.05, what=what)


# --- Alertmanager -----------------------------------------------------------


def alertmanager_binary() -> str:
    # Debian names the binary prometheus-alertmanager; upstream, alertmanager.
    for name in ("prometheus-alertmanager", "alertmanager"):
        if shutil.which(name):
            return str(shutil.which(name))
    missing("the program 'prometheus-alertmanager' (Debian package prometheus-alertmanager)")
    raise AssertionError("unreachable")


def alertmanager_config(smtp: SmtpServer, password_file: Path,
                        timings: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The shipped config, sending through ``smtp``; ``timings`` maps a receiver's
    route (or "root") to the group_wait/group_interval/repeat_interval to use."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp.port}"
    config["global"]["smtp_auth_password_file"] = str(password_file)
    config["templates"] = [str(TEMPLATES / "*.tmpl")]
    for receiver in config["receivers"]:
        for email_config in receiver.get("email_configs", []):
            email_config["tls_config"] = {"ca_file": str(smtp.ca_file)}
    routes = {route["receiver"]: route for route in config["route"]["routes"]}
    for receiver, values in timings.items():
        (config["route"] if receiver == "root" else routes[receiver]).update(values)
    return config


@dataclass
class Alertmanager:
    url: str

    def alerts(self) -> list[dict[str, Any]]:
        return list(get_json(self.url + "/api/v2/alerts"))


@contextmanager
def alertmanager(workdir: Path, config: dict[str, Any]) -> Iterator[Alertmanager]:
    binary = alertmanager_binary()
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [binary, f"--config.file={path}", f"--storage.path={workdir / 'am-data'}",
            "--cluster.listen-address="]  # no gossip port: a single instance
    with serving(workdir, "alertmanager", argv) as url:
        yield Alertmanager(url)


# --- Prometheus -------------------------------------------------------------


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = get_json(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@contextmanager
def prometheus(workdir: Path, rules: str, targets: list[str], alertmanager_url: str,
               interval: str = "1s", resend_delay: str = "500ms") -> Iterator[Prometheus]:
    """The example prometheus.yml with the given rules text, targets and Alertmanager,
    re-sending alerts at every evaluation as prometheus.yml advises (a resend delay
    below the evaluation interval)."""
    binary = require_binary("prometheus")
    rules_path = workdir / "rules.yml"
    rules_path.write_text(rules)
    config = yaml.safe_load(PROMETHEUS_EXAMPLE.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval,
                            scrape_timeout=interval)
    config["rule_files"] = [str(rules_path)]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [urllib.parse.urlsplit(alertmanager_url).netloc]}]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [binary, f"--config.file={path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--rules.alert.resend-delay={resend_delay}"]
    with serving(workdir, "prometheus", argv) as url:
        yield Prometheus(url)


def logs_of(workdir: Path) -> str:
    """The tail of every process log, for an assertion message."""
    return "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(workdir.glob("*.log")))

