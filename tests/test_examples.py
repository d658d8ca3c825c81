"""The translated seed configs in examples/ stay valid as the config grows."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, no_sip_reason, probewatch_argv

EXAMPLES = [*sorted((ROOT / "examples").glob("*.yml")), ROOT / "exporter" / "default.yml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path: Path) -> None:
    proc = subprocess.run(probewatch_argv("check", f"--config.file={path.relative_to(ROOT)}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    if "kind: sip" in path.read_text() and importlib.util.find_spec("pjsua2") is None and no_sip_reason():
        # Installed without the sip extra (no wheel for this platform): check says which extra.
        assert proc.returncode == 2 and "install it with: pip install 'probewatch[sip]'" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert ": OK, " in proc.stdout
