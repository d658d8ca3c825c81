"""GET /metrics and the one place that decides a response's format and gzip.

``metrics_response`` is the /metrics handler's body (``Exporter._get_metrics``
calls it with its page renderer): the exposition format from Accept.
``encode`` is what the web server does to every response before it is sent:
gzip when the client accepts it and the body is worth it, else the pieces
joined into few large writes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from .routing import Request, Response

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Bodies shorter than this go out uncompressed: gzip would not pay for itself.
GZIP_MIN_BYTES = 1024
CHUNK_BYTES = 1 << 20


def wants_openmetrics(request: Request) -> bool:
    return "application/openmetrics-text" in (request.headers.get("Accept") or "")


def metrics_response(request: Request, render: Callable[[bool], list[bytes]]) -> Response:
    """The /metrics page, ``render(openmetrics)``, in the format the client asked for."""
    openmetrics = wants_openmetrics(request)
    return Response(200, render(openmetrics), OPENMETRICS_TYPE if openmetrics else TEXT_TYPE)


# -- gzip --------------------------------------------------------------------------


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value admits gzip (``gzip;q=0`` and ``*;q=0`` refuse it)."""
    star = None
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def coalesced(pieces: list[bytes], size: int = CHUNK_BYTES) -> list[bytes]:
    """The pieces joined into chunks of about ``size`` bytes.

    A large /metrics page comes as thousands of small pieces; each write, and
    each zlib call (which drops and retakes the GIL the probes' loop also
    wants), costs per call, so both get few large chunks instead."""
    out: list[bytes] = []
    batch: list[bytes] = []
    length = 0
    for piece in pieces:
        batch.append(piece)
        length += len(piece)
        if length >= size:
            out.append(b"".join(batch))
            batch, length = [], 0
    if batch:
        out.append(b"".join(batch))
    return out


def gzipped(pieces: list[bytes]) -> bytes:
    """The pieces as one gzip member, at zlib level 1 (fast; /metrics text shrinks ~18x)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(chunk) for chunk in coalesced(pieces, 4 * CHUNK_BYTES)]
    out.append(compressor.flush())
    return b"".join(out)


def encode(response: Response, accept_encoding: str) -> tuple[list[bytes], str]:
    """The body to send and its Content-Encoding ('' for identity)."""
    pieces = response.pieces()
    if "Content-Encoding" in response.headers:  # encoded by the handler (serve --workers' /metrics)
        return coalesced(pieces), response.headers["Content-Encoding"]
    if (response.status >= 200 and response.status not in (204, 304)
            and sum(len(p) for p in pieces) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding)):
        return [gzipped(pieces)], "gzip"
    return coalesced(pieces), ""
