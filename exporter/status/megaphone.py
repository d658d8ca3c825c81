"""Megaphone's API, served as it was, on top of the registered-probe store.

    PUT /check/add {"id": "bar", "url": "http://..."}   add (or replace) a check
    GET /check/list                                     {"bar": "http://...", ...}
    GET /check/show/bar                                 the check's last document, plus "id"
    DELETE /check/bar                                   remove a check added here
    GET /status                                         served by api.py (same fields)

A check is a json probe with Megaphone's level table (OK, Unknown, Warning,
Critical; up only while OK), kept in the state file like any registered probe.
Megaphone had no token: with ``api.megaphone: loopback`` (the default) writes
from this host need none, and writes from elsewhere need api.token_file's
bearer token; ``token`` asks the token of everyone; ``read-only`` refuses writes.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from probes.json_status import DEFAULT_LEVELS

from ..config import NAME_RE, Config
from ..limits import parse_json_body
from ..routing import Request, Response, Router
from .api import NO_CACHE, StatusApi, error
from .collate import describe, iso, level_of

SHOW = r"/check/show/(?P<id>[^/]+?):?"  # Megaphone's README writes /check/show/foo: too
REMOVE = r"/check/(?P<id>[^/]+)"


def definition(url: str) -> dict[str, Any]:
    """The probe a Megaphone check becomes: Megaphone's levels, up only while OK."""
    return {"kind": "json", "target": url,
            "json": {"levels": dict(DEFAULT_LEVELS), "ok_levels": ["OK"]}}


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


class MegaphoneApi:
    def __init__(self, api: StatusApi) -> None:
        self.api = api

    def add_routes(self, router: Router) -> None:
        # Megaphone's README says "posting" and its session uses PUT: take both.
        router.add("PUT", "/check/add", self.add, bearer_auth=True)
        router.add("POST", "/check/add", self.add, bearer_auth=True)
        router.add("GET", "/check/list", self.list)
        router.add("GET", SHOW, self.show)
        router.add("DELETE", REMOVE, self.remove, bearer_auth=True)

    # -- reading -------------------------------------------------------------
    def list(self, request: Request) -> Response:
        """Every json probe this exporter runs, name to URL (config file and added ones)."""
        checks = {s.spec.name: s.spec.target
                  for s in sorted(self.api.exporter.scheduler.states(), key=lambda s: s.spec.name)
                  if s.spec.kind == "json"}
        return Response.json(checks, headers=dict(NO_CACHE))

    def show(self, request: Request) -> Response:
        name = request.params["id"]
        state = self.api.exporter.scheduler.state(name)
        if state is None:
            return error(404, f"no check named {name!r}")
        last = state.last
        if last is not None and isinstance(last.document, dict):
            body = {**last.document, "id": name}
        else:  # not run yet, unreadable reply, or not a json probe: Megaphone's fields
            body = {"status": level_of(state), "date": iso(state.last_run_at),
                    "message": describe(state), "id": name}
        return Response.json(body, headers=dict(NO_CACHE))

    # -- writing -------------------------------------------------------------
    def add(self, request: Request) -> Response:
        try:
            raw = parse_json_body(request.body)
        except ValueError as exc:
            return error(400, str(exc))
        if not isinstance(raw, dict):
            return error(400, 'the body must be a JSON object: {"id": "NAME", "url": "http://..."}')
        name, url = raw.get("id"), raw.get("url")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return error(400, f"id: {name!r} must be a name of letters, digits, _ . and -")
        if not isinstance(url, str) or not url:
            return error(400, "url: is required: the service's JSON status URL")
        config = self._writable(request, name, "change")
        if isinstance(config, Response):
            return config
        answer = self.api.register(request, config, name, definition(url))
        if answer.status >= 300:
            return answer
        return Response.json({"id": name, "url": url}, answer.status, headers=dict(NO_CACHE))

    def remove(self, request: Request) -> Response:
        name = request.params["id"]
        config = self._writable(request, name, "remove")
        if isinstance(config, Response):
            return config
        return self.api.unregister(request, name)

    def _writable(self, request: Request, name: str, verb: str) -> Config | Response:
        config = self.api.exporter.config
        if config is None:
            return error(503, "probewatch is starting; try again")
        mode = config.api.megaphone
        if mode == "read-only":
            return error(403, "Megaphone's write routes are off (api.megaphone: read-only); "
                              "use PUT /api/v1/probes/NAME with the token")
        local = mode == "loopback" and is_loopback(request.client)
        if not local or request.headers.get("Authorization"):
            if not config.api.token_file:
                where = "" if mode == "token" else f" from {request.client} (not this host)"
                return error(403, f"Megaphone's writes{where} need a token: set api.token_file "
                                  "in the config file")
            refused = self.api.check_token(request, config)
            if refused is not None:
                return refused
        return self.api.may_write(config, name, verb)


def attach(api: StatusApi, router: Router) -> None:
    MegaphoneApi(api).add_routes(router)
