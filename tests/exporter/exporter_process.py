"""Start the real `probewatch serve` on a free loopback port and read its /metrics."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, free_port, probewatch_argv, process


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    config: Path
    output_path: Path

    def output(self) -> str:
        """What the exporter wrote to stdout and stderr so far."""
        return self.output_path.read_text()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def ready(self) -> bool:
        try:
            return self.get("/-/ready")[0] == 200
        except OSError:
            return False

    def post(self, path: str) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        _, text, _ = self.get("/metrics")
        return {(s.name, frozenset(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def value(self, name: str, **labels: str) -> float | None:
        for (n, labs), v in self.samples().items():
            if n == name and all((k, val) in labs for k, val in labels.items()):
                return v
        return None


@contextmanager
def serve(config: Path, *extra: str, scheme: str = "http",
          ready: Callable[[Running], bool] = Running.ready, **popen: Any) -> Iterator[Running]:
    """The exporter on a free port; its output goes to a file beside the config.

    ``popen`` goes to subprocess.Popen (preexec_fn, env); ``scheme`` and ``ready``
    are for a web config's TLS or basic auth, which the default client lacks."""
    port = free_port()
    argv = probewatch_argv("serve", f"--config.file={config}",
                           f"--web.listen-address=127.0.0.1:{port}", *extra)
    log_path = config.with_name(config.stem + f".{port}.log")
    with open(log_path, "w") as log, process(argv, cwd=ROOT, stdout=log, **popen) as proc:
        running = Running(proc, f"{scheme}://127.0.0.1:{port}", config, log_path)
        deadline = time.monotonic() + 15
        while ready(running) is not True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"exporter did not become ready:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield running
