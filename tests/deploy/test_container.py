"""The container image's recipe: what goes into the build context, the entrypoint and labels,
and the README's `docker run` lines parse as probewatch command lines.

No Docker engine is needed (none runs where these tests run); the image itself was built by hand
where one was available (see README.md, "Container")."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

import pytest

from exporter.cli import build_parser
from tests.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for ``path`` (a pattern matches the path or a parent of it)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        globs = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        hit = any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in globs)
        if pattern.startswith("**/"):
            hit = hit or any(fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pattern[3:]) for p in prefixes)
        if hit:
            out = not negate
    return out


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_context_leaves_out_venv_caches_and_history_but_keeps_what_is_copied() -> None:
    patterns = dockerignore()
    for junk in (".venv/bin/python", ".git/HEAD", "build/screenshots/x.png", "exporter/__pycache__/cli.pyc",
                 ".pytest_cache/v", ".mypy_cache/3.11", ".ruff_cache/x", "probewatch.egg-info/PKG-INFO"):
        assert ignored(junk, patterns), junk
    copied = [src for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M) for src in line.split()]
    assert "exporter/" in copied and "deploy/kubernetes/probewatch.yml" in copied
    for source in copied:
        path = ROOT / source
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        kept = [p for p in files if "__pycache__" not in p.parts]
        assert kept, source
        for file in kept:
            assert not ignored(str(file.relative_to(ROOT)), patterns), f"{file} is copied but ignored"


def test_entrypoint_is_probewatch_and_serve_is_only_the_default_command() -> None:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE, re.M)[1])  # type: ignore[index]
    command = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)[1])  # type: ignore[index]
    assert entrypoint == ["probewatch"]
    args = build_parser().parse_args(command)
    assert args.command == "serve" and args.listen == ("0.0.0.0", 9637)


def test_oci_labels() -> None:
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', DOCKERFILE))
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and re.search(rf"^ARG VERSION={re.escape(version[1])}$", DOCKERFILE, re.M)


def readme_container_commands() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("## Container", 1)[1].split("\n## ", 1)[0]
    runs = []
    for line in re.findall(r"^docker run .*$", section, re.M):
        words = shlex.split(line.split(" #")[0])
        image = next(i for i, w in enumerate(words) if re.fullmatch(r"probewatch:[\w.]+", w))
        runs.append(words[image + 1:])
    return runs


def test_readme_shows_serve_check_and_agent_as_valid_command_lines() -> None:
    runs = readme_container_commands()
    commands = {(run[0] if run else "serve") for run in runs}
    assert {"serve", "check", "agent"} <= commands, runs
    parser = build_parser()
    for run in runs:
        if run:
            try:
                parser.parse_args(run)
            except SystemExit:
                pytest.fail(f"README's `docker run ... {' '.join(run)}` is not a probewatch command line")
