"""What a sip probe asks of the SIP endpoint (``SipRequest``) and what comes back (``SipOutcome``).

Plain data, free of pjsua2: probes/sip.py builds requests, probes/sip_endpoint.py's
worker carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    realm: str = ""  # empty: answer any realm


@dataclass
class SipRequest:
    method: str  # OPTIONS or INVITE
    uri: str  # the Request-URI, with ;transport= when not udp
    transport: str  # udp, tcp or tls
    family: int  # 4 or 6
    local_ip: str  # bound and advertised, for SIP and media alike
    local_port: int = 0
    credentials: Credentials | None = None
    success_state: str = "CONFIRMED"
    ca_file: str = ""
    verify_server: bool = False
    cert_file: str = ""  # the tls block's client certificate, key and lowest version
    key_file: str = ""
    min_version: str = ""


@dataclass
class SipOutcome:
    """What came of one request.  ``origin`` says who decided it:

    peer (a final response), transport (the connection failed), timer (pjsip
    gave up waiting), local (the request could not be sent), stopping.
    """

    code: int
    text: str
    origin: str
    succeeded: bool = False
    state: str = ""  # INVITE: the furthest call state reached
    credentials_sent: bool = False
