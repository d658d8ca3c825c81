"""exporter/metrics_route.py: the /metrics handler's format choice and the gzip decision every
response goes through, called directly (tests/exporter/test_web.py sees the same over HTTP)."""

from __future__ import annotations

import gzip

import pytest

from exporter.metrics_route import (
    CHUNK_BYTES,
    GZIP_MIN_BYTES,
    OPENMETRICS_TYPE,
    TEXT_TYPE,
    accepts_gzip,
    coalesced,
    encode,
    gzipped,
    metrics_response,
)
from exporter.routing import Request, Response


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip", True), ("GZip", True), ("x-gzip", True), ("br, gzip;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("br", False),
    ("", False), ("gzip;q=nonsense", False), ("*;q=0.1, gzip;q=0", False),
])
def test_accept_encoding_admits_gzip_only_when_it_says_so(header: str, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def test_a_large_page_is_gzipped_whole_and_a_small_one_is_sent_plain() -> None:
    pieces = [b"probewatch_probe_up{probe=\"p%d\"} 1\n" % i for i in range(200)]
    body, encoding = encode(Response(200, pieces), "gzip")
    assert encoding == "gzip" and len(body) == 1
    assert gzip.decompress(body[0]) == b"".join(pieces)
    small = [b"x" * (GZIP_MIN_BYTES - 1)]
    assert encode(Response(200, small), "gzip") == (small, "")
    assert encode(Response(200, pieces), "identity") == ([b"".join(pieces)], "")


def test_no_body_statuses_and_handler_encoded_bodies_are_left_alone() -> None:
    big = [b"y" * (2 * GZIP_MIN_BYTES)]
    assert encode(Response(204, big), "gzip")[1] == ""
    members = [gzip.compress(b"a"), gzip.compress(b"b")]  # serve --workers' /metrics
    body, encoding = encode(Response(200, members, headers={"Content-Encoding": "gzip"}), "gzip")
    assert encoding == "gzip" and gzip.decompress(b"".join(body)) == b"ab"


def test_pieces_are_joined_into_few_large_writes() -> None:
    pieces = [b"z" * 1000] * (3 * CHUNK_BYTES // 1000)
    chunks = coalesced(pieces)
    assert b"".join(chunks) == b"".join(pieces)
    assert len(chunks) == 3
    assert gzip.decompress(gzipped(pieces)) == b"".join(pieces)


def _request(accept: str) -> Request:
    return Request("GET", "/metrics", {}, {"Accept": accept}, b"")


def test_the_page_format_follows_accept() -> None:
    asked: list[bool] = []

    def render(openmetrics: bool) -> list[bytes]:
        asked.append(openmetrics)
        return [b"# EOF\n"] if openmetrics else [b"up 1\n"]

    plain = metrics_response(_request("*/*"), render)
    om = metrics_response(_request("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"), render)
    assert (plain.status, plain.content_type, plain.body) == (200, TEXT_TYPE, [b"up 1\n"])
    assert (om.content_type, om.body) == (OPENMETRICS_TYPE, [b"# EOF\n"])
    assert asked == [False, True]
