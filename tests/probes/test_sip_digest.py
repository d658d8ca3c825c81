"""Digest answers to SIP challenges (probes/sip_digest.py), checked by servers.

sipp's ``verifyauth`` (a real SIP server's check) accepts the MD5 answer sent over
UDP; for SHA-256 and the -sess forms, which sipp does not verify, a server-side
check written from RFC 7616 section 3.4.1 accepts them, and that check is shown
first to reproduce the RFC's own worked example (section 3.9.1).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from probes.sip_digest import DigestProblem, digest_answer
from probes.sip_request import Credentials
from tests.support import free_port, process, require_binary, wait_for

SCENARIOS = Path(__file__).resolve().parent / "sip_scenarios"
ALICE = Credentials("alice", "right-password")
URI = "sip:pbx.probewatch.test"
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def challenge(code: int = 401, **params: str) -> str:
    """A SIP response carrying one Digest challenge with ``params`` (quoted unless algorithm)."""
    header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    fields = ", ".join(f"{k}={v}" if k in ("algorithm", "stale") else f'{k}="{v}"'
                       for k, v in params.items())
    return (f"SIP/2.0 {code} Challenge\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKx\r\n"
            f"{header}: Digest {fields}\r\nContent-Length: 0\r\n\r\n")


def server_accepts(authorization: str, method: str, password: str, nonce: str,
                   realm: str) -> bool:
    """The server's side of RFC 7616 3.4.1: recompute ``response`` from what it knows."""
    scheme, _, rest = authorization.partition(" ")
    assert scheme == "Digest", authorization
    got = {m[0]: m[1] or m[2] for m in _PARAM.findall(rest)}
    if got.get("nonce") != nonce or got.get("realm") != realm:
        return False
    algorithm = got.get("algorithm", "MD5")
    sess = algorithm.upper().endswith("-SESS")
    hash_fn = HASHES[algorithm.upper().removesuffix("-SESS")]

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    ha1 = h(f"{got['username']}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{got['cnonce']}")
    ha2 = h(f"{method}:{got['uri']}")
    if got.get("qop") == "auth":
        expected = h(f"{ha1}:{nonce}:{got['nc']}:{got['cnonce']}:auth:{ha2}")
    else:
        expected = h(f"{ha1}:{nonce}:{ha2}")
    return secrets.compare_digest(expected, got.get("response", ""))


def test_the_server_side_check_reproduces_rfc7616_worked_example() -> None:
    common = ('username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
              'qop=auth, nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", '
              'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"')
    for algorithm, response in (("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
                                ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")):
        answer = f'Digest {common}, algorithm={algorithm}, response="{response}"'
        assert server_accepts(answer, "GET", "Circle of Life",
                              "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "http-auth@example.org")
        assert not server_accepts(answer, "GET", "Circle of Death",
                                  "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                                  "http-auth@example.org")


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("qop", ["auth", "", "auth-int,auth"])
@pytest.mark.parametrize("code", [401, 407])
def test_each_algorithm_and_qop_is_answered_so_the_server_accepts(
        algorithm: str, qop: str, code: int) -> None:
    params = {"realm": "probewatch.test", "nonce": "n0nce-42", "algorithm": algorithm}
    if qop:
        params["qop"] = qop
    answer = digest_answer(challenge(code, **params), code, "OPTIONS", URI, ALICE)
    assert isinstance(answer, str), answer
    assert server_accepts(answer, "OPTIONS", "right-password", "n0nce-42", "probewatch.test")
    assert not server_accepts(answer, "OPTIONS", "wrong-password", "n0nce-42", "probewatch.test")
    assert not server_accepts(answer, "INVITE", "right-password", "n0nce-42", "probewatch.test")
    assert f'uri="{URI}"' in answer and f"algorithm={algorithm}" in answer


def test_every_answer_has_a_fresh_client_nonce() -> None:
    text = challenge(realm="r", nonce="n", qop="auth")
    cnonces = {re.search(r'cnonce="([^"]+)"', str(digest_answer(text, 401, "OPTIONS", URI, ALICE)))
               .group(1) for _ in range(20)}  # type: ignore[union-attr]
    assert len(cnonces) == 20


def test_opaque_is_sent_back_unchanged_and_header_names_ignore_case() -> None:
    text = challenge(realm="r", nonce="n", opaque="0paque/+=").replace(
        "WWW-Authenticate", "www-authenticate")
    answer = digest_answer(text, 401, "OPTIONS", URI, ALICE)
    assert isinstance(answer, str)
    assert 'opaque="0paque/+="' in answer


def test_a_challenge_for_the_other_code_is_not_taken() -> None:
    """A 407 is answered from Proxy-Authenticate only, a 401 from WWW-Authenticate only."""
    text = challenge(401, realm="r", nonce="n")
    problem = digest_answer(text, 407, "OPTIONS", URI, ALICE)
    assert problem == DigestProblem("407 without a Digest challenge")


@pytest.mark.parametrize(("response", "creds", "problem"), [
    ("SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", ALICE,
     "401 without a Digest challenge"),
    ('SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\n\r\n', ALICE,
     "401 without a Digest challenge"),
    (challenge(realm="probewatch.test", nonce="n"), Credentials("alice", "pw", realm="other.test"),
     "the server asks for realm 'probewatch.test', credentials are for 'other.test'"),
    (challenge(realm="r", nonce="n", algorithm="SHA-512-256"), ALICE,
     "the server asks for digest algorithm SHA-512-256, not supported"),
])
def test_what_cannot_be_answered_says_why(response: str, creds: Credentials, problem: str) -> None:
    assert digest_answer(response, 401, "OPTIONS", URI, creds) == DigestProblem(problem)


# --- sipp's verifyauth ------------------------------------------------------------------


@contextmanager
def sipp_options_401(tmp_path: Path) -> Iterator[int]:
    """sipp running sip_scenarios/options-401.xml on a free loopback port; yields the port."""
    binary = require_binary("sipp")
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    argv = [binary, "-sf", str(SCENARIOS / "options-401.xml"), "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_port(socket.AF_INET, socket.SOCK_DGRAM)), "-nostdin"]
    out = tmp_path / "sipp.out"
    with out.open("w") as screen, process(argv, stdout=screen, stderr=subprocess.STDOUT) as proc:
        def listening() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return True
            return False

        wait_for(lambda: proc.poll() is not None or listening(), timeout=10, what="sipp to listen")
        assert proc.poll() is None, out.read_text()
        yield port


def options(sock: socket.socket, port: int, uri: str, authorization: str = "") -> str:
    """Send one OPTIONS (a new Call-ID each time) and return sipp's response."""
    local = sock.getsockname()[1]
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    request = (f"OPTIONS {uri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
               "Max-Forwards: 70\r\n"
               f"From: <sip:probewatch@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
               f"To: <{uri}>\r\nCall-ID: {secrets.token_hex(8)}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"
               f"Contact: <sip:probewatch@127.0.0.1:{local}>\r\n{extra}Content-Length: 0\r\n\r\n")
    sock.sendto(request.encode(), ("127.0.0.1", port))
    return sock.recv(65535).decode(errors="replace")


@pytest.mark.parametrize(("password", "status"), [("right-password", "200 OK"),
                                                  ("wrong-password", "403 Forbidden")])
def test_sipp_verifies_the_md5_answer(tmp_path: Path, password: str, status: str) -> None:
    with sipp_options_401(tmp_path) as port, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        uri = f"sip:127.0.0.1:{port}"
        first = options(sock, port, uri)
        assert first.startswith("SIP/2.0 401 "), first
        answer = digest_answer(first, 401, "OPTIONS", uri, Credentials("alice", password))
        assert isinstance(answer, str), answer
        second = options(sock, port, uri, answer)
    assert second.startswith(f"SIP/2.0 {status}"), second
