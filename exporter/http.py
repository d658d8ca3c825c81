"""A small threaded HTTP server with a route table.

Routes are (method, regex) -> handler(Request) -> Response.  HEAD is served by
the GET handler without a body; OPTIONS answers with the allowed methods; each
request is logged as one line.  Other modules (the status API) add routes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("probewatch.http")

MAX_BODY = 1 << 20


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


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

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


def _make_handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "probewatch"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                response = Response.text("request body too large\n", 413)
                self.close_connection = True
            else:
                body = self.rfile.read(length) if length > 0 else b""
                request = Request(self.command, split.path, parse_qs(split.query), self.headers,
                                  body, client=self.client_address[0])
                try:
                    response = router.dispatch(request)
                except Exception:
                    log.exception("handler failed", extra={"path": split.path})
                    response = Response.text("internal error\n", 500)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            pieces = response.body if isinstance(response.body, list) else [response.body]
            self.send_header("Content-Length", str(sum(len(p) for p in pieces)))
            for k, v in response.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                for piece in pieces:
                    self.wfile.write(piece)
            log.info("request", extra={"method": self.command, "path": split.path,
                                       "status": response.status, "client": self.client_address[0]})

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def parse_listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT; raise ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:9637 or [::1]:9637)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class HttpServer:
    def __init__(self, router: Router, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("Server", (_Server,), {"address_family": family})
        self._server = server_cls((host or "0.0.0.0", port), _make_handler(router))
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
