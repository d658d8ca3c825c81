"""The config watcher: applies a file only once it is whole, survives failures, recovers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from exporter.service import Exporter
from tests.exporter.exporter_process import serve
from tests.probes.servers import TcpServer
from tests.support import wait_for


def _config(target: str, count: int, group: str = "a") -> str:
    lines = ["defaults: {period: 100ms, timeout: 80ms}", "probes:"]
    lines += [f'  - {{name: p{i:02d}, kind: tcp, target: "{target}", labels: {{group: {group}}}}}'
              for i in range(count)]
    return "\n".join(lines) + "\n"


def test_a_file_truncated_then_written_is_applied_only_whole(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(server.target, 10))
    try:
        with serve(config, "--config.watch-interval=100ms", "--web.enable-lifecycle") as pw:
            wait_for(lambda: all((pw.value("probewatch_probe_runs_total", probe=f"p{i:02d}") or 0) >= 3
                                 for i in range(10)), 20, what="every probe ran")
            new = _config(server.target, 12, group="b")
            half = new[: new.index("p05")]  # valid YAML on its own: five probes
            seen: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    names = {dict(labs).get("probe") for (n, labs), _ in pw.samples().items()
                             if n == "probewatch_probe_runs_total"}
                    seen.append(len(names))
                    time.sleep(0.03)

            watcher = threading.Thread(target=sample)
            watcher.start()
            try:
                # What `>` and many editors do: truncate, write part, pause, write the rest.
                with config.open("w") as fh:
                    fh.flush()
                    time.sleep(0.15)
                    fh.write(half)
                    fh.flush()
                    time.sleep(0.25)
                    fh.write(new[len(half):])
                wait_for(lambda: pw.value("probewatch_probe_runs_total", probe="p11") is not None,
                         10, what="the whole new file applied")
                time.sleep(0.3)
            finally:
                stop.set()
                watcher.join(5)
            assert seen and min(seen) >= 10, f"probes dropped while the file was written: {seen}"
            # The ten kept probes kept their counters: none went back to a handful of runs.
            assert all(pw.value("probewatch_probe_runs_total", probe=f"p{i:02d}", group="b") >= 3
                       for i in range(10))
            assert pw.value("probewatch_config_last_reload_successful") == 1
    finally:
        server.close()


def test_a_bad_file_then_the_good_one_restored_reloads_back_to_success(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    good = _config(server.target, 3)
    config.write_text(good)
    try:
        with serve(config, "--config.watch-interval=100ms", "--web.enable-lifecycle") as pw:
            assert pw.value("probewatch_config_last_reload_successful") == 1
            config.write_text("probes:\n  - {name: x, kind: nope}\n")
            wait_for(lambda: pw.value("probewatch_config_last_reload_successful") == 0, 10,
                     what="the bad file refused")
            assert pw.value("probewatch_probe_runs_total", probe="p00") is not None, "old config kept"
            config.write_text(good)
            wait_for(lambda: pw.value("probewatch_config_last_reload_successful") == 1, 10,
                     what="the restored good file applied")

            # The same after a failed POST /-/reload: the watcher still sees the good file return.
            config.write_text("probes: [\n")
            assert pw.post("/-/reload")[0] == 400
            assert pw.value("probewatch_config_last_reload_successful") == 0
            config.write_text(good)
            wait_for(lambda: pw.value("probewatch_config_last_reload_successful") == 1, 10,
                     what="the restored good file applied after a failed /-/reload")

            # A FIFO in the file's place is refused at once, not read forever; the watcher goes on.
            config.unlink()
            import os
            os.mkfifo(config)
            status, body = pw.post("/-/reload")
            assert status == 400 and "is not a regular file" in body
            config.unlink()
            config.write_text(_config(server.target, 4))
            wait_for(lambda: pw.value("probewatch_probe_runs_total", probe="p03") is not None, 10,
                     what="a later change picked up")
            assert pw.value("probewatch_config_last_reload_successful") == 1
    finally:
        server.close()


def test_the_watcher_survives_an_exception_in_a_reload(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(server.target, 1))
    exporter = Exporter(str(config))
    failures = {"left": 2}

    def flaky() -> list:  # type: ignore[type-arg]
        # A probe source failing unexpectedly (as the registered-probe store might).
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("store unavailable")
        return []

    try:
        exporter.start()
        exporter.add_probe_source(flaky)
        exporter.watch(0.1, settle=0.1)
        config.write_text(_config(server.target, 2))
        wait_for(lambda: exporter.scheduler.state("p01") is not None, 10,
                 what="the change applied once the source recovered")
        assert failures["left"] == 0
        assert exporter.telemetry.reload_ok._value.get() == 1
        config.write_text(_config(server.target, 3))
        wait_for(lambda: exporter.scheduler.state("p02") is not None, 10,
                 what="the watcher still running after the failures")
    finally:
        exporter.stop()
        server.close()
