"""Digest answers for OPTIONS challenges (RFC 7616: MD5, SHA-256 and their -sess forms).

pjsua2's ``Account.sendRequest`` does not answer a 401/407 itself, so the SIP worker
(probes/sip_options.py) resends the OPTIONS with the Authorization computed here.
Calls (INVITE) are answered by pjsua from the account's credentials instead.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from .sip_request import Credentials

_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass
class DigestProblem:
    problem: str


def digest_answer(response: str, code: int, method: str, uri: str,
                  creds: Credentials) -> str | DigestProblem:
    """The Authorization value answering the challenge in ``response`` (RFC 7616)."""
    name = "www-authenticate" if code == 401 else "proxy-authenticate"
    challenge = ""
    for line in response.splitlines():
        head, sep, value = line.partition(":")
        if sep and head.strip().lower() == name and value.strip().lower().startswith("digest"):
            challenge = value.strip()[len("digest"):]
            break
    if not challenge:
        return DigestProblem(f"{code} without a Digest challenge")
    params = {m[0].lower(): m[1] or m[2] for m in _PARAM_RE.findall(challenge)}
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    if creds.realm and creds.realm != realm:
        return DigestProblem(f"the server asks for realm {realm!r}, credentials are for"
                             f" {creds.realm!r}")
    algorithm = params.get("algorithm", "MD5")
    hashes = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
    base = algorithm.upper().removesuffix("-SESS")
    if base not in hashes:
        return DigestProblem(f"the server asks for digest algorithm {algorithm}, not supported")

    def h(text: str) -> str:
        return hashes[base](text.encode()).hexdigest()

    ha1 = h(f"{creds.username}:{realm}:{creds.password}")
    cnonce = secrets.token_hex(8)
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{creds.username}"', f'realm="{realm}"', f'nonce="{nonce}"',
              f'uri="{uri}"', f"algorithm={algorithm}"]
    if "auth" in qops:
        response_hash = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response_hash = h(f"{ha1}:{nonce}:{ha2}")
        if algorithm.upper().endswith("-SESS"):  # HA1 holds it: the server needs it too
            fields.append(f'cnonce="{cnonce}"')
    fields.append(f'response="{response_hash}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)
