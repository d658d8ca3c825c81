"""probewatch as PID 1 in a PID namespace the test makes: orphans reaped, exit codes kept."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.exporter.exporter_process import Running
from tests.support import ROOT, free_port, missing, probewatch_argv, process, wait_for

CONFIG = """\
probes:
  # Each run leaves an orphan: the subshell starts sleep and exits, so sleep is
  # re-parented to PID 1 and ends a moment later.
  - {name: orphans, kind: command, period: 200ms, timeout: 150ms,
     command: {argv: [sh, -c, "(sleep 0.05 &) ; exit 1"]}}
  - {name: three, kind: command, period: 200ms, timeout: 150ms,
     command: {argv: [sh, -c, "(sleep 0.05 &) ; exit 3"]}}
  - {name: fine, kind: command, period: 200ms, timeout: 150ms, command: {argv: ["true"]}}
"""


def _namespace_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def _zombies_in(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _namespace_of(int(entry)) != namespace:
                continue
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            found.append(int(entry))
    return found


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def test_as_pid_1_orphans_are_reaped_and_exit_codes_stay_right(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        missing("the program 'unshare' (util-linux)")
    if os.geteuid() != 0:
        missing("root (to create a PID namespace with unshare)")
    config = tmp_path / "probewatch.yml"
    config.write_text(CONFIG)
    port = free_port()
    log_path = tmp_path / "serve.log"
    argv = [str(unshare), "--pid", "--fork", "--mount-proc", "--kill-child",
            *probewatch_argv("serve", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}", "--config.watch-interval=0")]
    with open(log_path, "w") as log, process(argv, cwd=ROOT, stdout=log) as proc:
        pw = Running(proc, f"http://127.0.0.1:{port}", config, log_path)
        wait_for(pw.ready, 20, what=f"the exporter ready as PID 1:\n{log_path.read_text()}")
        init = wait_for(lambda: _children(proc.pid), 5, what="the namespace's PID 1")[0]
        namespace = _namespace_of(init)
        assert namespace != _namespace_of(os.getpid()), "not in a PID namespace of its own"
        start = pw.value("probewatch_probe_runs_total", probe="orphans") or 0
        samples = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples.append(len(_zombies_in(namespace)))
            time.sleep(0.5)
        runs = (pw.value("probewatch_probe_runs_total", probe="orphans") or 0) - start
        assert runs >= 20, f"only {runs} runs in 10 s:\n{pw.output()}"
        # Without reaping each run leaves one zombie: 20+ by now.  A zombie seen
        # between its exit and the next reap is fine; a pile is not.
        assert max(samples[-5:]) <= 3, f"zombies piled up: {samples}"
        assert pw.value("probewatch_probe_return_code", probe="orphans") == 1
        assert pw.value("probewatch_probe_return_code", probe="three") == 3
        assert pw.value("probewatch_probe_return_code", probe="fine") == 0
        assert pw.value("probewatch_probe_up", probe="fine") == 1
        assert "Unknown child process" not in pw.output()
