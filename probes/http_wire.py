"""HTTP/1.1 on the wire for the http and json kinds: the request's bytes and the reply's framing.

No I/O here: ``request_bytes`` builds what is written once; ``ResponseReader``
is fed the bytes as they arrive and says when the reply is complete (status
line and headers, then the body framed by Content-Length, chunked transfer
coding or the connection's close), decoding gzip/deflate as it goes and
stopping at ``max_body_bytes``.  Whatever the peer sends that is not HTTP
raises ``WireError`` with a short reason (never a traceback for the user).
"""

from __future__ import annotations

import zlib
from urllib.parse import quote

MAX_HEAD = 64 * 1024  # status line + headers; more is not a reply we parse
MAX_CHUNK_LINE = 4096
ACCEPT_ENCODING = "gzip, deflate"

_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class WireError(Exception):
    """The peer's bytes are not an HTTP/1.1 reply we accept (the message says why)."""


class BodyTooLarge(Exception):
    """The body, decoded, is longer than max_body_bytes."""


def host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def request_target(path: str, query: str) -> str:
    """The origin-form target, non-ASCII and spaces percent-encoded (as browsers send them)."""
    out = quote(path or "/", safe=_PATH_SAFE)
    return f"{out}?{quote(query, safe=_QUERY_SAFE)}" if query else out


def request_bytes(method: str, target: str, host: str, headers: dict[str, str],
                  body: bytes) -> bytes:
    """One request; ``headers`` (any case) replace the defaults of the same name.

    The defaults are Host, Accept, Accept-Encoding and Connection: close (every
    run uses a new connection); Content-Length is always ours.
    """
    given = {k.lower(): (k, v) for k, v in headers.items()}
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in (("Host", host), ("Accept", "*/*"), ("Accept-Encoding", ACCEPT_ENCODING),
                        ("Connection", "close")):
        if name.lower() not in given:
            lines.append(f"{name}: {value}")
    lines += [f"{k}: {v}" for low, (k, v) in given.items()
              if low not in ("content-length", "transfer-encoding")]
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


class _Decoder:
    """Content-Encoding gzip/deflate undone on the fly, bounded by the body limit."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []
        enc = encoding.strip().lower()
        self._z: zlib._Decompress | None = None
        self._deflate = enc == "deflate"
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._deflate:
            self._z = zlib.decompressobj()
        # anything else (identity, br, unknown) is kept as sent

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._z is None:
            self._keep(data)
            return
        try:
            out = self._z.decompress(data, self.limit - self.size + 1)
        except zlib.error as exc:
            if self._deflate and self.size == 0 and not self.parts:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
                self._deflate = False
                self.feed(data)
                return
            raise WireError(f"broken body: cannot decode its content encoding ({exc})") from None
        self._keep(out)
        if self._z.unconsumed_tail:  # more output than the limit allows
            raise BodyTooLarge

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLarge
        self.parts.append(data)

    def body(self) -> bytes:
        if self._z is not None:
            self._keep(self._z.flush())
        return b"".join(self.parts)


class ResponseReader:
    """Parses one reply from bytes fed as they arrive.

    ``feed(buf)`` consumes what it can from ``buf`` (a bytearray, cut in place)
    and returns True once the reply is complete; ``at_eof()`` is called when
    the peer closed, and ends a body delimited by the close.  1xx interim
    replies are skipped.
    """

    def __init__(self, method: str, limit: int) -> None:
        self.method = method
        self.limit = limit
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.done = False
        self._mode = ""  # length | chunked | close | none
        self._left = 0  # length: bytes to go; chunked: bytes of the current chunk to go
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._decoder: _Decoder | None = None

    # -- head --

    def parse_head(self, buf: bytearray) -> bool:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise WireError(f"bad response: the status line and headers exceed {MAX_HEAD} bytes")
            if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
                raise WireError(f"bad response: not HTTP: {_shown(buf)}")
            return False
        if end > MAX_HEAD:
            raise WireError(f"bad response: the status line and headers exceed {MAX_HEAD} bytes")
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise WireError(f"bad response: not an HTTP status line: {_shown(status_line)}")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise WireError(f"bad response: malformed header line {_shown(line)}")
            low = name.lower()
            value = value.strip()
            headers[low] = f"{headers[low]}, {value}" if low in headers else value
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return self.parse_head(buf) if buf else False  # interim reply: the real one follows
        self.version, self.status, self.reason, self.headers = version, status, reason.strip(), headers
        self.head_done = True
        self._frame()
        return True

    def _frame(self) -> None:
        h = self.headers
        if self.method == "HEAD" or self.status in _NO_BODY_STATUS or self.status < 200:
            self._mode = "none"
            return
        self._decoder = _Decoder(h.get("content-encoding", ""), self.limit)
        te = h.get("transfer-encoding", "").lower()
        if te:
            if te.replace(" ", "").split(",")[-1] != "chunked":
                self._mode = "close"
                return
            self._mode = "chunked"
            return
        if "content-length" in h:
            raw = h["content-length"]
            values = {v.strip() for v in raw.split(",")}
            if len(values) != 1 or not (v := values.pop()).isdigit():
                raise WireError(f"bad response: Content-Length {_shown(raw)}")
            self._left = int(v)
            self._mode = "length"
            return
        self._mode = "close"

    # -- body --

    def feed(self, buf: bytearray) -> bool:
        if not self.head_done and not self.parse_head(buf):
            return False
        if self._mode == "none":
            self.done = True
        elif self._mode == "length":
            self._feed_length(buf)
        elif self._mode == "chunked":
            self._feed_chunked(buf)
        else:
            self._take(buf, len(buf))
        return self.done

    def _take(self, buf: bytearray, n: int) -> None:
        if n <= 0:
            return
        assert self._decoder is not None
        data = bytes(buf[:n]) if n < len(buf) else bytes(buf)
        del buf[:n]
        self._decoder.feed(data)

    def _feed_length(self, buf: bytearray) -> None:
        n = min(self._left, len(buf))
        self._take(buf, n)
        self._left -= n
        if self._left == 0:
            self.done = True

    def _feed_chunked(self, buf: bytearray) -> None:
        while buf and not self.done:
            if self._chunk_state == "data":
                n = min(self._left, len(buf))
                self._take(buf, n)
                self._left -= n
                if self._left:
                    return
                self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise WireError("broken body: a chunk does not end with CRLF")
                del buf[:2]
                self._chunk_state = "size"
            elif self._chunk_state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise WireError("broken body: chunk size line too long")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise WireError(f"broken body: bad chunk size {_shown(line)}") from None
                if size < 0:
                    raise WireError(f"broken body: bad chunk size {_shown(line)}")
                if size == 0:
                    self._chunk_state = "trailer"
                else:
                    self._left = size
                    self._chunk_state = "data"
            else:  # trailer lines, up to an empty one
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise WireError("broken body: trailer too long")
                    return
                del buf[: end + 2]
                if end == 0:
                    self.done = True

    def at_eof(self) -> None:
        """The peer closed: fine for a close-delimited body, a failure otherwise."""
        if self.done:
            return
        if not self.head_done:
            raise EOFError
        if self._mode == "close":
            self.done = True
            return
        if self._mode == "length":
            raise WireError(f"broken body: the connection closed with {self._left} bytes "
                            "of the Content-Length still to come")
        raise WireError("broken body: the connection closed inside the chunked body")

    def body(self) -> bytes:
        return self._decoder.body() if self._decoder is not None else b""


def _shown(data: bytes | bytearray | str, limit: int = 40) -> str:
    text = repr(bytes(data[:limit]) if not isinstance(data, str) else data[:limit])
    return text + ("..." if len(data) > limit else "")
