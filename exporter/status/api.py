"""/status for load balancers and /api/v1/probes for reading and registering probes.

    GET /status?group=web            200 {"status": "OK", ...} or 503 {"status": "Critical", ...}
    OPTIONS /status                  the same (Cmdchk and HAProxy's httpchk)
    GET /api/v1/probes[/NAME]        the probes, or one with its definition and last 100 runs
    PUT /api/v1/probes/NAME          register or replace (bearer token; JSON definition)
    DELETE /api/v1/probes/NAME       unregister (bearer token)
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from probes.redact import mask_value
from probes.secret_files import CredentialError, read_credential

from ..config import Config, config_dir
from ..limits import parse_json_body
from ..probe_state import ProbeState
from ..routing import Request, Response, Router
from ..service import Exporter
from ..sharding import Shard
from .collate import Selection, collate, iso, summary
from .store import RegisteredProbes, StoreError, command_refused, resolve

log = logging.getLogger("probewatch.status")

NAME = r"/api/v1/probes/(?P<name>[^/]+)"
NO_CACHE = {"Cache-Control": "no-store"}


def error(status: int, message: str, **extra: Any) -> Response:
    headers = extra.pop("headers", {})
    return Response.json({"error": message, **extra}, status, headers={**NO_CACHE, **headers})


def detail(state: ProbeState) -> dict[str, Any]:
    """One probe with its definition, last result, schedule and recent runs."""
    document = {"document": state.last.document if state.last else None} if state.spec.kind == "json" else {}
    return {
        **summary(state),
        "definition": state.spec.definition(),
        "next_run": iso(state.next_run_at) if state.spec.active else None,
        "runs_total": state.runs_total,
        "failures_total": state.failures_total,
        "consecutive_failures": state.consecutive_failures,
        "runs": [
            {"started": iso(r.started, precise=True), "latency_seconds": round(r.latency, 6),
             "up": r.up, "code": r.code, "reason": r.reason, "message": r.message,
             "level": r.level_name}
            for r in list(state.recent)
        ],
        **document,
    }


class StatusApi:
    def __init__(self, exporter: Exporter, store: Callable[[], RegisteredProbes]) -> None:
        self.exporter = exporter
        self.store = store
        # Serializes scheduler updates from the API so the last write is the last applied.
        self._apply_lock = threading.Lock()

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/status", self.get_status)
        # Cmdchk answered OPTIONS (HAProxy's default httpchk method) like GET: 200 or 503.
        router.add("OPTIONS", "/status", self.get_status)
        router.add("GET", "/api/v1/probes", self.list_probes)
        router.add("GET", NAME, self.get_probe)
        router.add("PUT", NAME, self.put_probe, bearer_auth=True)
        router.add("DELETE", NAME, self.delete_probe, bearer_auth=True)

    # -- reading -------------------------------------------------------------
    def get_status(self, request: Request) -> Response:
        try:
            selection = Selection.from_query(request.query)
        except ValueError as exc:
            return error(400, str(exc))
        result = collate(self.exporter.scheduler.states(), selection)
        body = {
            "status": result.status,
            "date": iso(time.time()),
            "message": result.message,
            "probes": [summary(s) for s in result.probes],
        }
        headers = {**NO_CACHE, "Allow": "GET, HEAD, OPTIONS"} if request.method == "OPTIONS" else NO_CACHE
        return Response.json(body, 200 if result.healthy else 503, headers=dict(headers))

    def list_probes(self, request: Request) -> Response:
        try:
            selection = Selection.from_query(request.query)
        except ValueError as exc:
            return error(400, str(exc))
        states = selection.select(self.exporter.scheduler.states())
        return Response.json({"probes": [summary(s) for s in states]}, headers=dict(NO_CACHE))

    def get_probe(self, request: Request) -> Response:
        name = request.params["name"]
        state = self.exporter.scheduler.state(name)
        if state is not None:
            return Response.json(detail(state), headers=dict(NO_CACHE))
        raw = self.store().definition(name)
        if raw is not None:  # registered but not run here (another shard, or now invalid)
            return Response.json({"name": name, "source": "api", "scheduled": False,
                                  "registered_definition": mask_value(raw)}, headers=dict(NO_CACHE))
        return error(404, f"no probe named {name!r}")

    # -- writing -------------------------------------------------------------
    def put_probe(self, request: Request) -> Response:
        config = self._writable(request, "change")
        if isinstance(config, Response):
            return config
        try:
            raw = parse_json_body(request.body)
        except ValueError as exc:
            return error(400, str(exc))
        return self.register(request, config, request.params["name"], raw)

    def register(self, request: Request, config: Config, name: str, raw: Any) -> Response:
        """Check, store and schedule one definition; the answer for the client."""
        if isinstance(raw, dict) and command_refused(raw.get("kind"), config.api):
            return error(403, "command probes can be registered only with "
                              "api.allow_command: true in the config file")
        spec, problems = resolve(name, raw, config.defaults, config.api, config_dir(config.path))
        if spec is None:
            return error(400, f"probe {name!r} not registered: {len(problems)} problem(s)",
                         problems=[str(p) for p in problems])
        try:
            created = self.store().put(spec, raw)
        except StoreError as exc:
            log.error("probe not registered", extra={"probe": name, "problem": str(exc)})
            return error(500, str(exc))
        self._apply()
        log.info("probe registered" if created else "probe replaced",
                 extra={"probe": name, "client": request.client})
        state = self.exporter.scheduler.state(name)
        body = detail(state) if state is not None else {"name": name, "scheduled": False}
        return Response.json(body, 201 if created else 200, headers=dict(NO_CACHE))

    def delete_probe(self, request: Request) -> Response:
        refused = self._writable(request, "remove")
        if isinstance(refused, Response):
            return refused
        return self.unregister(request, request.params["name"])

    def unregister(self, request: Request, name: str) -> Response:
        try:
            deleted = self.store().delete(name)
        except StoreError as exc:
            log.error("probe not unregistered", extra={"probe": name, "problem": str(exc)})
            return error(500, str(exc))
        if not deleted:
            return error(404, f"no registered probe named {name!r}")
        self._apply()
        log.info("probe unregistered", extra={"probe": name, "client": request.client})
        return Response(204, headers=dict(NO_CACHE))

    def _apply(self) -> None:
        with self._apply_lock:
            self.exporter.apply()

    def _writable(self, request: Request, verb: str) -> Config | Response:
        """The config if this request may write to the probe it names; else the refusal."""
        config = self.exporter.config
        if config is None:
            return error(503, "probewatch is starting; try again")
        if not config.api.token_file:
            return error(403, "registration is off: set api.token_file in the config file")
        refused = self.check_token(request, config)
        return refused or self.may_write(config, request.params["name"], verb)

    def check_token(self, request: Request, config: Config) -> Response | None:
        """None when the request carries the bearer token of api.token_file; else the refusal."""
        expected = read_token(config.api.token_file, config.path)
        if expected is None:
            return error(503, "registration is unavailable: the token file cannot be "
                              "read (see the exporter log)")
        given = request.headers.get("Authorization") or ""
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 expected.encode()):
            return error(401, "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="probewatch"'})
        return None

    def may_write(self, config: Config, name: str, verb: str) -> Config | Response:
        """The config if the probe ``name`` may be written here (store, shard, origin)."""
        store = self.store()
        if store.broken:
            return error(503, f"registration is off: {store.broken}")
        if name in config.by_name():
            return error(409, f"probe {name!r} comes from the config file; "
                              f"{verb} it there, not through the API")
        shard = self.exporter.shard
        if not shard.owns(name):
            owner = next(i for i in range(shard.count) if Shard(i, shard.count).owns(name))
            return error(421, f"probe {name!r} belongs to shard {owner}/{shard.count}, and this "
                              f"exporter is shard {shard}: {verb} it on the exporter started "
                              f"with --shard={owner}/{shard.count}",
                         shard=f"{owner}/{shard.count}")
        return config


def read_token(token_file: str, config_path: str) -> str | None:
    """The token (surrounding white space removed), read afresh so it can be rotated."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_path)), token_file)
    try:
        return read_credential(path).strip()  # a regular file of at most 64 KiB, never a FIFO
    except CredentialError as exc:
        log.error("api.token_file cannot serve; registration refused",
                  extra={"file": path, "error": str(exc)})
        return None

