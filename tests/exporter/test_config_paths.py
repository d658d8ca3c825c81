"""Paths in a config are taken from the config file's folder, whatever the working
directory (exporter/config.py resolve_paths); `probewatch check` reads the API's
token file and checks that the state file can be written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config
from tests.support import ROOT, probewatch_argv, self_signed_certificate

CONFIG = """
api: {token_file: secrets/api-token, state_file: state/registered.json}
probes:
  - name: web
    kind: http
    target: https://127.0.0.1:1/
    http:
      tls: {ca_file: certs/ca.pem, cert_file: certs/ca.pem, key_file: certs/key.pem}
      basic_auth: {username: probe, password_file: secrets/password}
  - name: api
    kind: json
    target: http://127.0.0.1:1/status
    json: {bearer_token_file: secrets/token}
  - name: smtp
    kind: tcp
    target: 127.0.0.1:1
    tcp: {tls: {ca_file: certs/ca.pem}}
  - name: job
    kind: command
    command: {argv: ["true"], cwd: work}
"""


def layout(tmp_path: Path) -> Path:
    """A config folder with every file the config names, relative to it."""
    folder = tmp_path / "etc" / "probewatch"
    for sub in ("secrets", "certs", "state", "work"):
        (folder / sub).mkdir(parents=True)
    (folder / "secrets" / "token").write_text("t0ken\n")
    (folder / "secrets" / "api-token").write_text("api-t0ken\n")
    (folder / "secrets" / "password").write_text("pw\n")
    cert, key = self_signed_certificate(folder / "certs")
    cert.rename(folder / "certs" / "ca.pem")
    key.rename(folder / "certs" / "key.pem")
    config = folder / "probewatch.yml"
    config.write_text(CONFIG)
    return config


def check(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(probewatch_argv("check", f"--config.file={config}"), capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_every_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    config = layout(tmp_path)
    folder = config.parent
    loaded = load_config(str(config))
    by_name = loaded.by_name()
    web = by_name["web"].options
    assert (web.tls.ca_file, web.tls.key_file) == (f"{folder}/certs/ca.pem", f"{folder}/certs/key.pem")
    assert web.basic_auth.password_file == f"{folder}/secrets/password"
    assert by_name["api"].options.bearer_token_file == f"{folder}/secrets/token"
    assert by_name["smtp"].options.tls.ca_file == f"{folder}/certs/ca.pem"
    assert by_name["job"].options.cwd == f"{folder}/work"
    assert loaded.api.token_file == f"{folder}/secrets/api-token"
    assert loaded.api.state_file == f"{folder}/state/registered.json"
    # The same from another working directory, with the config named relatively.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = check(Path("../etc/probewatch/probewatch.yml"), elsewhere)
    assert done.returncode == 0, done.stderr
    done = check(config, ROOT)
    assert done.returncode == 0, done.stderr


def test_check_reads_the_token_file_and_the_state_folder(tmp_path: Path) -> None:
    config = layout(tmp_path)
    folder = config.parent
    (folder / "secrets" / "api-token").unlink()
    done = check(config, ROOT)
    assert done.returncode == 2
    assert f"{config}:2: api: token_file: cannot read '{folder}/secrets/api-token': No such file" \
        in done.stderr
    (folder / "secrets" / "api-token").write_text("\n")
    assert "is empty" in check(config, ROOT).stderr
    (folder / "secrets" / "api-token").write_text("t0ken\n")
    (folder / "state").rmdir()
    (folder / "state").write_text("a file where the state folder should be")
    done = check(config, ROOT)
    assert done.returncode == 2
    assert f"{config}:2: api: state_file: {folder}/state/registered.json: " in done.stderr
    (folder / "state").unlink()
    (folder / "state").mkdir()
    (folder / "state" / "registered.json").write_text("{not json")
    done = check(config, ROOT)
    assert done.returncode == 2 and "is not valid JSON" in done.stderr


def test_check_only_warns_about_the_state_file_when_registration_was_not_asked_for(
        tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    config = tmp_path / "probewatch.yml"
    config.write_text("probes: []\n")
    (tmp_path / "registered-probes.json").write_text("[]")
    done = check(config, ROOT)
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "registered-probes.json" in done.stderr


def test_bad_relative_path_is_named_absolutely(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n  - {name: a, kind: tcp, target: '127.0.0.1:1', "
                      "tcp: {tls: {ca_file: nope.pem}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(config))
    assert f"cannot read '{tmp_path}/nope.pem'" in str(caught.value)
