"""command kind: real processes, exit codes, output, and timeouts that kill the group."""

from __future__ import annotations

import time
from pathlib import Path

from tests.probes.run import run_once
from tests.support import pid_running


def config(block: str, timeout: str = "2s") -> str:
    return (f"probes:\n- name: c\n  kind: command\n  period: 5s\n  timeout: {timeout}\n"
            f"  command: {block}\n")


def test_exit_zero_is_up_with_output_as_message() -> None:
    result, _ = run_once(config("{argv: [sh, -c, 'echo all good']}"))
    assert result.up and result.code == 0
    assert result.message == "all good"


def test_accepted_codes_other_than_zero() -> None:
    result, _ = run_once(config("{argv: [sh, -c, 'exit 2'], ok_codes: [0, 2]}"))
    assert result.up and result.code == 2


def test_empty_ok_codes_means_zero_only() -> None:
    result, _ = run_once(config("{argv: [sh, -c, 'echo bad >&2; exit 1'], ok_codes: []}"))
    assert not result.up
    assert (result.code, result.reason) == (1, "unexpected_code")
    assert result.message == "exit code 1 (accepted: 0): bad"


def test_no_shell_unless_asked() -> None:
    result, _ = run_once(config("{argv: ['echo', '$HOME && false']}"))
    assert result.up and result.message == "$HOME && false"
    result, _ = run_once(config("{argv: ['echo shell-$((1+2))'], shell: true}"))
    assert result.up and result.message == "shell-3"


def test_env_and_cwd(tmp_path: Path) -> None:
    result, _ = run_once(config(
        f"{{argv: [sh, -c, 'echo $GREETING; pwd'], env: {{GREETING: hi}}, cwd: '{tmp_path}'}}"))
    assert result.message == f"hi\n{tmp_path}"


def test_output_is_capped() -> None:
    result, _ = run_once(config("{argv: [sh, -c, 'yes x | head -c 1000000']}"))
    assert result.up
    assert 1000 < len(result.message) <= 4096


def test_hanging_command_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"
    started = time.monotonic()
    result, latency = run_once(config(f"{{argv: [sh, -c, '{script}']}}", timeout="500ms"))
    assert time.monotonic() - started < 3
    assert not result.up and result.reason == "timeout"
    assert 0.49 < latency < 1.5
    for pid in map(int, pids.read_text().split()):
        for _ in range(50):
            if not pid_running(pid):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"process {pid} of the timed-out command is still running")


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_running(pid)]
        if not alive:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if pid_running(pid)]


def test_a_background_child_does_not_outlive_a_finished_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The child keeps stdout open: the run must not wait for it either.
    started = time.monotonic()
    result, _ = run_once(config(f"{{argv: [sh, -c, 'sleep 30 & echo $! > {pids}; echo done']}}",
                                timeout="4s"))
    assert time.monotonic() - started < 2
    assert (result.up, result.message) == (True, "done")
    assert _gone_within([int(pids.read_text())], 2.0) == []


def test_a_command_ignoring_sigterm_with_a_child_on_its_stdout_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (f"trap \"\" TERM; (trap \"\" TERM; sleep 30) & echo $! > {pids}; "
              f"echo $$ >> {pids}; while :; do sleep 0.1; done")
    started = time.monotonic()
    result, latency = run_once(config(f"{{argv: [sh, -c, '{script}']}}", timeout="500ms"))
    assert time.monotonic() - started < 1.5  # the run is not held by the kill
    assert (result.up, result.reason) == (False, "timeout")
    assert 0.49 < latency < 1.2
    # SIGTERM is ignored, so SIGKILL (half a second later) ends both.
    assert _gone_within([int(p) for p in pids.read_text().split()], 3.0) == []
