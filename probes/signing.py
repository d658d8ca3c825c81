"""The signed envelope of the udp probe and ``probewatch agent`` (MDP over UDP).

Both sides hold the same key; the key never travels.  A datagram is one JSON
object:

- request: ``{"mdp": 1, "type": "request", "nonce": N, "ts": MS, "body": B, "mac": M}``
  where ``M = HMAC-SHA256(key, "probewatch-mdp/1 request\\n" N "\\n" MS "\\n" B)``;
  ``N`` is 16 random bytes in hex, ``MS`` the sender's Unix time in milliseconds
  and ``B`` the body text (the agent expects JSON there).
- reply: ``{"mdp": 1, "type": "reply", "nonce": N, "body": B, "mac": M}`` with
  ``M = HMAC-SHA256(key, "probewatch-mdp/1 reply\\n" N "\\n" B)``: the request's
  nonce binds the reply to that request, so an old reply cannot answer a new one.
- refusal: ``{"mdp": 1, "type": "refused", "nonce": N or null, "reason": R}``,
  unsigned (the agent may not share the sender's key); it only tells the probe
  why no reply comes.

The two MAC inputs start with different labels so a reply can never pass for a
request.  MACs are compared in constant time.  Freshness (timestamps) and replay
(nonces seen) are the agent's policy and live there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .secret_files import CredentialError, read_credential_bytes

VERSION = 1
NONCE_BYTES = 16
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
_REQUEST_LABEL = b"probewatch-mdp/1 request\n"
_REPLY_LABEL = b"probewatch-mdp/1 reply\n"


class KeyFileError(Exception):
    """The key file cannot serve as a key; the message says why."""


class BadEnvelope(Exception):
    """A datagram that is not a valid envelope; ``reason`` is a short logfmt token.

    ``not_mdp`` marks datagrams that are not envelopes at all (the agent does
    not answer those), ``malformed`` envelopes with bad fields, ``bad_signature``
    a MAC made with another key, ``auth`` a reply the probe cannot trust.
    """

    def __init__(self, reason: str, detail: str, nonce: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.nonce = nonce


@dataclass(frozen=True)
class SignedRequest:
    """A request whose MAC checked out."""

    nonce: str
    timestamp: float  # seconds since the epoch, as the sender's clock saw it
    body: str


@dataclass(frozen=True)
class Refusal:
    """The agent's unsigned word on why it did not answer."""

    reason: str


def load_key(path: str) -> bytes:
    """The key held in ``path`` (surrounding white space dropped)."""
    try:
        data = read_credential_bytes(path, "key file", 1 << 20).strip()  # regular, never a FIFO
    except CredentialError as exc:
        raise KeyFileError(str(exc)) from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyFileError(f"key file {path!r} is larger than {MAX_KEY_BYTES} bytes")
    key = data.strip()
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"key file {path!r} holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES}"
            " (make one with: openssl rand -hex 32)"
        )
    return key


def _mac(key: bytes, *parts: bytes) -> str:
    return hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest()


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_request(key: bytes, body: str, *, nonce: str | None = None,
                 now: float | None = None) -> tuple[bytes, str]:
    """The request datagram for ``body`` and the nonce its reply must carry."""
    nonce = nonce or secrets.token_hex(NONCE_BYTES)
    ms = str(round((time.time() if now is None else now) * 1000))
    mac = _mac(key, _REQUEST_LABEL, nonce.encode(), b"\n", ms.encode(), b"\n", body.encode())
    envelope = {"mdp": VERSION, "type": "request", "nonce": nonce, "ts": int(ms),
                "body": body, "mac": mac}
    return _encode(envelope), nonce


def sign_reply(key: bytes, nonce: str, body: str) -> bytes:
    mac = _mac(key, _REPLY_LABEL, nonce.encode(), b"\n", body.encode())
    return _encode({"mdp": VERSION, "type": "reply", "nonce": nonce, "body": body, "mac": mac})


def refusal(reason: str, nonce: str | None) -> bytes:
    return _encode({"mdp": VERSION, "type": "refused", "nonce": nonce, "reason": reason})


def _parse(datagram: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(datagram.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadEnvelope("not_mdp", "not a JSON datagram") from None
    if not isinstance(obj, dict) or obj.get("mdp") != VERSION:
        raise BadEnvelope("not_mdp", f"not a probewatch-mdp/{VERSION} envelope")
    return obj


def _field(obj: dict[str, Any], name: str, tp: type, nonce: str | None = None) -> Any:
    value = obj.get(name)
    if not isinstance(value, tp) or isinstance(value, bool):
        raise BadEnvelope("malformed", f"envelope field {name!r} is missing or mistyped", nonce)
    return value


def _valid_nonce(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 2 * NONCE_BYTES:
        try:
            bytes.fromhex(value)
        except ValueError:
            return None
        return value
    return None


def open_request(key: bytes, datagram: bytes) -> SignedRequest:
    """Check a request's form and MAC; raise BadEnvelope saying what is wrong."""
    obj = _parse(datagram)
    if obj.get("type") != "request":
        raise BadEnvelope("malformed", "envelope is not a request")
    nonce = _valid_nonce(obj.get("nonce"))
    if nonce is None:
        raise BadEnvelope("malformed", f"nonce must be {2 * NONCE_BYTES} hex digits")
    ms = _field(obj, "ts", int, nonce)
    if not 0 <= ms < 2**53:
        raise BadEnvelope("malformed", "timestamp out of range", nonce)
    body = _field(obj, "body", str, nonce)
    mac = _field(obj, "mac", str, nonce)
    expected = _mac(key, _REQUEST_LABEL, nonce.encode(), b"\n", str(ms).encode(), b"\n",
                    body.encode())
    if not hmac.compare_digest(expected, mac):
        raise BadEnvelope("bad_signature", "the MAC does not match (another key?)", nonce)
    return SignedRequest(nonce=nonce, timestamp=ms / 1000.0, body=body)


def open_reply(key: bytes, nonce: str, datagram: bytes) -> str | Refusal:
    """The body of a reply to the request with ``nonce``, or the agent's refusal.

    Raises BadEnvelope (reason ``auth``) for anything that is not a reply signed
    with ``key`` over this request's nonce.
    """
    try:
        obj = _parse(datagram)
    except BadEnvelope as exc:
        raise BadEnvelope("auth", f"reply is not signed ({exc.detail})") from None
    kind = obj.get("type")
    if kind == "refused":
        if obj.get("nonce") not in (nonce, None):
            raise BadEnvelope("auth", "refusal answers another request (nonce differs)")
        reason = obj.get("reason")
        return Refusal(reason if isinstance(reason, str) else "unknown")
    if kind != "reply":
        raise BadEnvelope("auth", "reply is not signed (no reply envelope)")
    body, mac = obj.get("body"), obj.get("mac")
    if not isinstance(body, str) or not isinstance(mac, str):
        raise BadEnvelope("auth", "reply carries no MAC")
    if obj.get("nonce") != nonce:
        raise BadEnvelope("auth", "reply answers another request (nonce differs)")
    expected = _mac(key, _REPLY_LABEL, nonce.encode(), b"\n", body.encode())
    if not hmac.compare_digest(expected, mac):
        raise BadEnvelope("auth", "reply MAC does not match (another key?)")
    return body


def key_file_is_private(path: str) -> bool:
    """False when group or others may read the key file (worth a warning)."""
    try:
        return os.stat(path).st_mode & 0o077 == 0
    except OSError:
        return True
