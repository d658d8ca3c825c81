"""The web server's route table and the request and response every handler sees.

Routes are (method, regex) -> handler(Request) -> Response, registered with
``Router.add``.  HEAD is served by the GET handler without a body; OPTIONS
answers 204 with the allowed methods; an unknown path answers 404 and a known
path with another method 405 with Allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    client: str = ""

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a message fit for a client."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes | list[bytes] = b""  # a list is written piece by piece (large /metrics pages)
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **kw: Any) -> Response:
        return cls(status, (json.dumps(data, indent=1) + "\n").encode(), "application/json", **kw)

    @classmethod
    def text(cls, text: str, status: int = 200, **kw: Any) -> Response:
        return cls(status, text.encode(), **kw)

    def pieces(self) -> list[bytes]:
        return self.body if isinstance(self.body, list) else [self.body]


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._bearer: set[tuple[str, str]] = set()

    def add(self, method: str, pattern: str, handler: Handler, *, bearer_auth: bool = False) -> None:
        """Route METHOD PATTERN to handler.  ``bearer_auth``: the handler checks an
        ``Authorization: Bearer`` token itself, so a request carrying one skips the
        web config's basic auth (both cannot travel in the one header)."""
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))
        if bearer_auth:
            self._bearer.add((method, pattern))

    def checks_bearer(self, method: str, path: str) -> bool:
        return any(m == method and re.match(f"^{p}$", path) for m, p in self._bearer)

    def allowed(self, path: str) -> list[str]:
        methods = {m for m, rx, _ in self._routes if rx.match(path)}
        if "GET" in methods:
            methods.add("HEAD")
        if methods:
            methods.add("OPTIONS")
        return sorted(methods)

    def dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        for m, rx, handler in self._routes:
            match = rx.match(request.path)
            if match and m == method:
                request.params = match.groupdict()
                return handler(request)
        allowed = self.allowed(request.path)
        if not allowed:
            return Response.text("not found\n", 404)
        if request.method == "OPTIONS":
            return Response(204, headers={"Allow": ", ".join(allowed)})
        return Response.text(f"method {request.method} not allowed\n", 405,
                             headers={"Allow": ", ".join(allowed)})
