"""Secrets never leave: masked on every page, label and log; API probes' files fenced in."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests

from probes.redact import mask_text, mask_value
from tests.exporter.exporter_process import serve
from tests.exporter.peers import http_peer
from tests.exporter.test_status_store import put, setup, up  # noqa: F401
from tests.support import ROOT, missing, probewatch_argv, wait_for

SECRETS = ("hunter2", "tok123", "key123", "cookie123", "sippw", "jar456")


def _sip_available() -> bool:
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        return False
    return True


def test_mask_text_and_mask_value() -> None:
    assert mask_text("http://user:hunter2@h/") == "http://user:***@h/"
    assert mask_text("https://tok123@h/x") == "https://***@h/x"
    assert mask_text("sip:alice:sippw@127.0.0.1;transport=tcp") == \
        "sip:alice:***@127.0.0.1;transport=tcp"
    assert mask_text("sip:alice@127.0.0.1") == "sip:alice@127.0.0.1"
    assert mask_text("http://h/?a=1&api_key=key123&b=2") == "http://h/?a=1&api_key=***&b=2"
    assert mask_text("127.0.0.1:22") == "127.0.0.1:22"
    assert mask_value({"headers": {"X-Api-Key": "key123", "Accept": "text/html"},
                       "json": {"password": "hunter2"}, "bearer_token_file": "/run/token"}) == {
        "headers": {"X-Api-Key": "***", "Accept": "text/html"},
        "json": {"password": "***"}, "bearer_token_file": "/run/token"}


def test_secrets_are_masked_everywhere_they_are_shown(tmp_path: Path) -> None:
    if not _sip_available():
        missing("the SIP kind's pjsua2 module (pip install '.[sip]')")
    with http_peer(b"hello") as url:
        target = url.replace("http://", "http://user:hunter2@") + "/?token=tok123"
        config = tmp_path / "probewatch.yml"
        config.write_text(
            "probes:\n"
            f"  - {{name: web, kind: http, target: '{target}', period: 200ms, timeout: 150ms,\n"
            "     http: {headers: {X-Api-Key: key123, Cookie: 'c=cookie123', X-Session: jar456},\n"
            "            body_regex: nothere}}\n"
            "  - {name: phone, kind: sip, active: false, target: 'sip:alice:sippw@127.0.0.1'}\n")
        with serve(config, "--log.level=debug") as pw:
            wait_for(lambda: (pw.value("probewatch_probe_runs_total", probe="web") or 0) >= 2,
                     what="two runs")
            shown = {path: requests.get(pw.url + path, timeout=10).text
                     for path in ("/", "/status", "/api/v1/probes", "/api/v1/probes/web",
                                  "/api/v1/probes/phone", "/metrics")}
            pw.post("/-/reload")
            time.sleep(0.3)
            shown["log"] = pw.output()
        done = subprocess.run(probewatch_argv("probe", "web", f"--config.file={config}"),
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        shown["probewatch probe"] = done.stdout + done.stderr
    for where, text in shown.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown in {where}"
    assert 'target="http://user:***@127.0.0.1:' in shown["/metrics"]
    assert "sip:alice:***@127.0.0.1" in shown["/api/v1/probes"]
    assert '"X-Api-Key": "***"' in shown["/api/v1/probes/web"]
    assert "user:***@" in shown["probewatch probe"]


def test_api_probes_read_files_only_from_the_credentials_directory(
        tmp_path: Path, up: str) -> None:  # noqa: F811
    def http_probe(**block: str) -> dict[str, object]:
        return {"kind": "http", "target": "http://127.0.0.1:1/", "http": block}

    with serve(setup(tmp_path, up)) as pw:
        refused = put(pw, "a", http_probe(bearer_token_file="/etc/passwd"))
        assert refused.status_code == 400
        assert refused.json()["problems"] == [
            "http.bearer_token_file: probes registered through the API may not read files; "
            "set api.credentials_dir in the config file to allow one directory"]

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text("tok123\n")
    (creds / "big").write_bytes(b"x" * (65 * 1024))
    os.mkfifo(creds / "fifo")
    (creds / "zero").symlink_to("/dev/zero")
    (creds / "escape").symlink_to("/etc/passwd")
    with serve(setup(tmp_path, up, more=", credentials_dir: creds")) as pw:
        for name, value, says in (
            ("outside", "/etc/passwd", "'/etc/passwd' is outside api.credentials_dir"),
            ("dotdot", "../probewatch.yml", "'../probewatch.yml' is outside api.credentials_dir"),
            ("escape", "escape", "'escape' is outside api.credentials_dir"),
            ("zero", "zero", "'zero' is outside api.credentials_dir"),
            ("fifo", "fifo", "cannot read 'fifo': not a regular file"),
            ("big", "big", "cannot read 'big': larger than 64 KiB"),
        ):
            started = time.monotonic()
            answer = put(pw, name, http_probe(bearer_token_file=value))
            assert answer.status_code == 400, (name, answer.text)
            assert answer.json()["problems"] == [f"http.bearer_token_file: {says}"], name
            assert time.monotonic() - started < 5, f"{name} took too long"
        nested = put(pw, "nested", http_probe(**{"basic_auth": {"username": "u",  # type: ignore[arg-type]
                                                                "password_file": "/etc/shadow"}}))
        assert nested.json()["problems"] == [
            "http.basic_auth.password_file: '/etc/shadow' is outside api.credentials_dir"]
        ok = put(pw, "ok", http_probe(bearer_token_file="token"))
        assert ok.status_code == 201, ok.text
        assert "tok123" not in ok.text
