"""The Makefile's install steps as a user on another platform meets them: without the sip extra
when no pjsua2 wheel fits (forced here by PROBEWATCH_NO_SIP=1), and python3-venv when missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT, require_binary


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("make"), "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_install_without_sip_runs_every_other_kind_and_check_names_the_extra(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = make(f"VENV={venv}", "PROBEWATCH_NO_SIP=1", f"{venv}/bin/.installed")
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("probewatch:")]
    assert said == ["probewatch: installing without the sip kind (PROBEWATCH_NO_SIP is set); every other kind works"]
    assert (venv / "probewatch-no-sip").read_text().strip() == "PROBEWATCH_NO_SIP is set"
    python, probewatch = str(venv / "bin" / "python"), str(venv / "bin" / "probewatch")
    assert subprocess.run([python, "-c", "import pjsua2"], capture_output=True, timeout=60).returncode == 1

    ok = subprocess.run([probewatch, "check", "--config.file=exporter/default.yml"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "OK, 5 probes" in ok.stdout, ok.stderr
    up = subprocess.run([probewatch, "probe", "local-shell", "--config.file=exporter/default.yml"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0 and "result:  up" in up.stdout, up.stdout + up.stderr
    config = tmp_path / "sip.yml"
    config.write_text("probes:\n  - {name: tcp, kind: tcp, target: '127.0.0.1:1'}\n"
                      "  - name: pbx\n    kind: sip\n    target: sip:pbx@127.0.0.1\n")
    sip = subprocess.run([probewatch, "check", f"--config.file={config}"], capture_output=True, text=True,
                         timeout=60)
    assert sip.returncode == 2 and "Traceback" not in sip.stderr
    assert (f"{config}:4: probes[1] (pbx): kind: kind 'sip' cannot be loaded: pjsua2 is not installed; "
            "install it with: pip install 'probewatch[sip]'") in sip.stderr
    kinds = subprocess.run([probewatch, "kinds", "sip"], capture_output=True, text=True, timeout=60)
    assert kinds.returncode == 0 and "unavailable: kind 'sip' cannot be loaded" in kinds.stdout


def test_a_python_without_the_venv_module_gets_python3_venv_from_apt(tmp_path: Path) -> None:
    # Stand-ins for what cannot be undone here: an interpreter lacking venv/ensurepip (as on a
    # fresh Debian) and the sudo in front of apt-get; both log what make asked of them.
    log = tmp_path / "calls.log"
    python = tmp_path / "python3"
    python.write_text(f"#!/bin/sh\necho \"python $*\" >> {log}\nexit 1\n")
    sudo = tmp_path / "sudo"
    sudo.write_text(f"#!/bin/sh\necho \"sudo $*\" >> {log}\n")
    python.chmod(0o755)
    sudo.chmod(0o755)
    venv = tmp_path / "venv"
    done = make(f"PYTHON={python}", f"SUDO={sudo}", f"VENV={venv}", f"{venv}/bin/python", timeout=60)
    assert done.returncode != 0  # the stand-in python cannot make a venv after all
    assert f"probewatch: {python} has no venv module; installing the Debian package python3-venv" in done.stdout
    assert log.read_text().splitlines() == [
        "python -c import ensurepip, venv",
        "sudo apt-get update -q",
        "sudo apt-get install -y -q python3-venv",
        f"python -m venv {venv}",
    ]
    assert shutil.which("make")
