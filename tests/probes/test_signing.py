"""The signed MDP envelope (probes/signing.py): what the agent accepts, what it and the probe refuse."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from probes import signing
from tests.exporter.test_agent import KEY, agent_and_client, run

UPTIME = json.dumps({"version": "1", "operations": ["uptime"]})


def tampered(datagram: bytes, **changes: Any) -> bytes:
    """The same envelope with some fields changed and its MAC left as it was."""
    return json.dumps({**json.loads(datagram), **changes}).encode()


def ask_agent(*datagrams: bytes) -> list[bytes | None]:
    """Send each datagram to a real agent (127.0.0.1, port 0) and collect what it answers."""
    async def scenario() -> list[bytes | None]:
        async with agent_and_client(max_skew=30.0, log_interval=0) as (_, client):
            return [await client.ask(d, wait=2.0) for d in datagrams]

    return run(scenario())


def reason(datagram: bytes | None) -> str:
    assert datagram is not None, "the agent did not answer"
    envelope = json.loads(datagram)
    return envelope["reason"] if envelope["type"] == "refused" else envelope["type"]


def test_a_signed_request_is_answered_with_a_reply_the_probe_can_open() -> None:
    datagram, nonce = signing.sign_request(KEY, UPTIME)
    (reply,) = ask_agent(datagram)
    assert reply is not None
    body = signing.open_reply(KEY, nonce, reply)
    assert isinstance(body, str)
    assert "uptime_seconds" in json.loads(body)["operations"]["uptime"]


def test_a_tampered_request_is_refused_by_the_agent_as_bad_signature() -> None:
    now = time.time()
    good, _ = signing.sign_request(KEY, UPTIME, now=now)
    other = os.urandom(signing.NONCE_BYTES).hex()
    forged = [
        tampered(good, body=json.dumps({"version": "1", "operations": ["disk_free"]})),
        tampered(good, ts=json.loads(good)["ts"] + 1),  # one millisecond later: still fresh
        tampered(good, nonce=other),  # a replay disguised under a new nonce
        tampered(good, mac="0" * 64),
        signing.sign_request(b"a key the agent does not hold!!", UPTIME, now=now)[0],
    ]
    answers = ask_agent(*forged, good)
    assert [reason(a) for a in answers] == ["bad_signature"] * 5 + ["reply"]


def test_a_reply_cannot_be_replayed_as_a_request() -> None:
    """The two MAC inputs carry different labels: the agent's own reply is no request."""
    nonce = os.urandom(signing.NONCE_BYTES).hex()
    reply = signing.sign_reply(KEY, nonce, UPTIME)
    as_request = tampered(reply, type="request", ts=round(time.time() * 1000))
    with pytest.raises(signing.BadEnvelope) as caught:
        signing.open_request(KEY, as_request)
    assert caught.value.reason == "bad_signature"
    assert [reason(a) for a in ask_agent(as_request)] == ["bad_signature"]


def test_the_probe_refuses_a_tampered_or_misdirected_reply() -> None:
    datagram, nonce = signing.sign_request(KEY, UPTIME)
    (reply,) = ask_agent(datagram)
    assert reply is not None
    body = json.loads(reply)["body"]
    cases = {
        "reply MAC does not match (another key?)": tampered(reply, body=body.replace("true", "false")),
        "reply answers another request (nonce differs)": signing.sign_reply(KEY, "ab" * 16, body),
        "reply carries no MAC": tampered(reply, mac=None),
        "reply is not signed (not a JSON datagram)": b"\xff not json",
        "reply is not signed (no reply envelope)": tampered(reply, type="request"),
    }
    for detail, datagram in cases.items():
        with pytest.raises(signing.BadEnvelope) as caught:
            signing.open_reply(KEY, nonce, datagram)
        assert (caught.value.reason, caught.value.detail) == ("auth", detail)
    with pytest.raises(signing.BadEnvelope, match="another key"):
        signing.open_reply(b"the probe holds some other key!!", nonce, reply)


def test_a_refusal_is_read_only_for_its_own_request() -> None:
    nonce = "cd" * 16
    assert signing.open_reply(KEY, nonce, signing.refusal("stale", nonce)) == signing.Refusal("stale")
    assert signing.open_reply(KEY, nonce, signing.refusal("busy", None)) == signing.Refusal("busy")
    with pytest.raises(signing.BadEnvelope, match="refusal answers another request"):
        signing.open_reply(KEY, nonce, signing.refusal("stale", "ef" * 16))


@pytest.mark.parametrize(("envelope", "reason", "detail"), [
    (b"[1]", "not_mdp", "not a probewatch-mdp/1 envelope"),
    (b'{"mdp": 2}', "not_mdp", "not a probewatch-mdp/1 envelope"),
    (b'{"mdp": 1, "type": "reply"}', "malformed", "envelope is not a request"),
    (b'{"mdp": 1, "type": "request", "nonce": "xyz"}', "malformed", "nonce must be 32 hex digits"),
    (b'{"mdp": 1, "type": "request", "nonce": "' + b"ab" * 16 + b'", "ts": true}', "malformed",
     "envelope field 'ts' is missing or mistyped"),
    (b'{"mdp": 1, "type": "request", "nonce": "' + b"ab" * 16 + b'", "ts": -1}', "malformed",
     "timestamp out of range"),
    (b'{"mdp": 1, "type": "request", "nonce": "' + b"ab" * 16 + b'", "ts": 1, "body": 3}',
     "malformed", "envelope field 'body' is missing or mistyped"),
])
def test_a_malformed_request_says_which_field(envelope: bytes, reason: str, detail: str) -> None:
    with pytest.raises(signing.BadEnvelope) as caught:
        signing.open_request(KEY, envelope)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


def test_the_request_carries_the_senders_time_and_a_fresh_nonce() -> None:
    first, n1 = signing.sign_request(KEY, "{}", now=1_700_000_000.123)
    _, n2 = signing.sign_request(KEY, "{}")
    opened = signing.open_request(KEY, first)
    assert opened == signing.SignedRequest(nonce=n1, timestamp=1_700_000_000.123, body="{}")
    assert n1 != n2 and len(n1) == 2 * signing.NONCE_BYTES


# --- key files ----------------------------------------------------------------------------


def test_a_key_file_is_read_without_surrounding_white_space(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"  " + KEY + b"\n\n")
    assert signing.load_key(str(path)) == KEY


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"short\n"),
     "holds 5 bytes; a key needs at least 16 (make one with: openssl rand -hex 32)"),
    (lambda p: p.write_bytes(b"k" * 4097), "is larger than 4096 bytes"),
    (lambda p: None, "cannot read key file {path!r}: No such file or directory"),
    (lambda p: p.mkdir(), "cannot read key file {path!r}: not a regular file"),
    (lambda p: os.mkfifo(p), "cannot read key file {path!r}: not a regular file"),
])
def test_a_key_file_that_cannot_serve_says_why(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "key"
    make(path)
    with pytest.raises(signing.KeyFileError) as caught:
        signing.load_key(str(path))
    assert message.format(path=str(path)) in str(caught.value)


def test_a_key_file_others_may_read_is_not_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    assert signing.key_file_is_private(str(path))
    path.chmod(0o640)
    assert not signing.key_file_is_private(str(path))
