"""A running Megaphone's checks (GET /check/list) as json probes.

``probewatch import megaphone URL`` reads ``URL/check/list`` (``{"id": "url"}``)
and writes one json probe per check, with Megaphone's level table (the json
kind's default: OK, Unknown, Warning, Critical).  ``--register=PROBEWATCH_URL``
adds them to a running probewatch through its /check/add instead.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from . import ImportFailed, Translation, probe_name

TIMEOUT = 10.0


def list_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/check/list") else url + "/check/list"


def fetch_checks(url: str) -> dict[str, str]:
    where = list_url(url)
    try:
        resp = requests.get(where, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ImportFailed(f"{where}: cannot be read: {exc}") from None
    if resp.status_code != 200:
        raise ImportFailed(f"{where}: answered HTTP {resp.status_code}, not 200")
    try:
        doc = json.loads(resp.text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{where}:{exc.lineno}: is not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ImportFailed(f'{where}:1: is not Megaphone\'s check list ({{"id": "url", ...}})')
    return doc


def translate(url: str) -> Translation:
    t = Translation("megaphone", [list_url(url)])
    taken: set[str] = set()
    for check_id, target in sorted(fetch_checks(url).items()):
        name = probe_name(check_id, taken)
        if name != check_id:
            t.note(f"check {check_id!r} renamed {name!r} (probe names are letters, digits, _ . -)")
        probe: dict[str, Any] = {"name": name, "kind": "json", "target": target}
        if not target.startswith(("http://", "https://")):
            t.note(f"check {check_id!r}: {target!r} is not an http(s) URL; left out")
            taken.discard(name)
            continue
        t.probes.append(probe)
    t.comments = ["Megaphone's checks as json probes; /status collates them as Megaphone did,",
                  "and /check/add, /check/list, /check/show/ID keep answering."]
    return t


def register(t: Translation, probewatch_url: str) -> list[str]:
    """PUT each probe to a running probewatch's /check/add; the failures, as lines."""
    failed = []
    for probe in t.probes:
        body = {"id": probe["name"], "url": probe["target"]}
        try:
            resp = requests.put(probewatch_url.rstrip("/") + "/check/add", json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            failed.append(f"{probe['name']}: {exc}")
            continue
        if resp.status_code >= 300:
            failed.append(f"{probe['name']}: HTTP {resp.status_code}: {resp.text.strip()}")
    return failed
