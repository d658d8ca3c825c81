"""The translated seed configs in examples/ stay valid as the config grows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, probewatch_argv

EXAMPLES = [*sorted((ROOT / "examples").glob("*.yml")), ROOT / "exporter" / "default.yml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path: Path) -> None:
    proc = subprocess.run(probewatch_argv("check", f"--config.file={path.relative_to(ROOT)}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ": OK, " in proc.stdout
