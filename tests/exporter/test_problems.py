"""One config-problem shape: the file, the YAML parser, the web config and the status API
all report ConfigProblem, worded by one __str__."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ApiSettings, Defaults, load_config
from exporter.problems import ConfigError, ConfigProblem
from exporter.status.store import resolve
from exporter.webconfig import load_web_config


def problems_of(load, path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert all(type(p) is ConfigProblem for p in info.value.problems), info.value.problems
    return info.value.problems


def test_every_path_reports_the_same_shape(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "yaml.yml"
    bad_yaml.write_text("probes: [\n")
    (yaml_problem,) = problems_of(load_config, bad_yaml)
    assert (yaml_problem.file, yaml_problem.where, yaml_problem.key) == (str(bad_yaml), "", "")
    assert str(yaml_problem).startswith(f"{bad_yaml}:{yaml_problem.line}: invalid YAML: ")

    probe = tmp_path / "probe.yml"
    probe.write_text("probes:\n  - name: web\n    kind: tcp\n    target: 127.0.0.1:1\n    period: 1h\n"
                     "    timeout: 2h\n")
    (file_problem,) = problems_of(load_config, probe)
    assert file_problem == ConfigProblem(str(probe), 6, "probes[0] (web)", "timeout",
                                         "must be shorter than period (1h)")
    assert str(file_problem) == f"{probe}:6: probes[0] (web): timeout: must be shorter than period (1h)"

    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: 3\n")
    (web_problem,) = problems_of(load_web_config, web)
    assert web_problem.file == str(web) and str(web_problem).startswith(f"{web}:1: tls_server_config")

    # The status API: no file and no line, the same key and words as the file's.
    raw = {"kind": "tcp", "target": "127.0.0.1:1", "period": "1h", "timeout": "2h"}
    spec, (api_problem,) = resolve("web", raw, Defaults(), ApiSettings())
    assert spec is None
    assert api_problem == ConfigProblem(key="timeout", message="must be shorter than period (1h)")
    assert str(api_problem) == "timeout: must be shorter than period (1h)"


def test_secrets_in_a_message_are_masked_when_shown() -> None:
    problem = ConfigProblem("p.yml", 3, "probes[0] (web)", "target",
                            "http://user:hunter2@127.0.0.1/ is not reachable")
    assert "hunter2" not in str(problem)
    assert str(problem).startswith("p.yml:3: probes[0] (web): target: http://user:***@")
