"""The pjsua2 worker's accounts and transports: one per distinct combination, reused, swept when idle.

A request's transport key is its transport, family, local address and port and
its tls block; its account key adds the INVITE credentials.  pjsua holds at
most ``MAX_TRANSPORTS`` and ``MAX_ACCOUNTS``: at the account limit every idle
account is released to make room, and past it the request fails with a
``SipSetupError`` that says so.  Everything here runs on the worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from .sip_handle import SipSetupError, exc_text
from .sip_request import SipRequest

log = logging.getLogger("probewatch.sip")

TRANSPORT_TYPES = {
    ("udp", 4): pj.PJSIP_TRANSPORT_UDP, ("tcp", 4): pj.PJSIP_TRANSPORT_TCP,
    ("tls", 4): pj.PJSIP_TRANSPORT_TLS, ("udp", 6): pj.PJSIP_TRANSPORT_UDP6,
    ("tcp", 6): pj.PJSIP_TRANSPORT_TCP6, ("tls", 6): pj.PJSIP_TRANSPORT_TLS6,
}
# tls.min_version: the protocol versions pjsip may speak.
TLS_PROTOCOLS = {"1.2": pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3,
                 "1.3": pj.PJ_SSL_SOCK_PROTO_TLS1_3}
# pjsua's compiled-in limits: 8 transports (one is the wake transport), 8 accounts.
MAX_TRANSPORTS = 7
MAX_ACCOUNTS = 8


@dataclass
class SipAccount:
    key: tuple[Any, ...]
    transport: tuple[Any, ...]
    obj: Any
    in_flight: set[int] = field(default_factory=set)  # OPTIONS transactions still open
    calls: set[int] = field(default_factory=set)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.calls


class _ProbeAccount(pj.Account):
    def __init__(self, on_request_done: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_request_done = on_request_done

    def onSendRequest(self, prm: Any) -> None:  # pjsua2's name
        try:
            self._on_request_done(prm.e)
        except Exception:  # an exception must not cross into C++
            log.exception("handling an OPTIONS response failed")


class SipAccounts:
    """The accounts and transports in use.  ``on_request_done`` gets every OPTIONS
    transaction's end (pjsua2's ``Account.onSendRequest``); ``ep`` is set once the
    endpoint is created."""

    def __init__(self, on_request_done: Callable[[Any], None]) -> None:
        self._on_request_done = on_request_done
        self.ep: Any = None
        self._transports: dict[tuple[Any, ...], int] = {}
        self._transport_used: dict[tuple[Any, ...], float] = {}
        self._accounts: dict[tuple[Any, ...], SipAccount] = {}

    def account(self, request: SipRequest) -> SipAccount:
        tkey = (request.transport, request.family, request.local_ip, request.local_port,
                request.ca_file, request.verify_server, request.cert_file, request.key_file,
                request.min_version)
        creds = request.credentials if request.method == "INVITE" else None
        key = (tkey, creds)
        account = self._accounts.get(key)
        if account is not None:
            return account
        if len(self._accounts) >= MAX_ACCOUNTS:
            self.sweep(time.monotonic())  # make room: release every idle account
            if len(self._accounts) >= MAX_ACCOUNTS:
                raise SipSetupError(
                    f"more than {MAX_ACCOUNTS} distinct transport and credential combinations"
                    " are busy at once (pjsua's limit)")
        tid = self._transport(tkey)
        cfg = pj.AccountConfig()
        host = f"[{request.local_ip}]" if request.family == 6 else request.local_ip
        cfg.idUri = f"sip:probewatch@{host}"
        cfg.sipConfig.transportId = tid
        # The wheel's pjsua is built without PJ_HAS_IPV6: it asserts (aborting the process)
        # unless both stay disabled.  The bound transport still carries SIP over IPv6.
        cfg.sipConfig.ipv6Use = pj.PJSUA_IPV6_DISABLED
        media = cfg.mediaConfig
        media.transportConfig.port = 0
        media.transportConfig.boundAddress = request.local_ip
        media.transportConfig.publicAddress = request.local_ip
        media.ipv6Use = pj.PJSUA_IPV6_DISABLED
        nat = cfg.natConfig
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.iceEnabled = False
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        if creds is not None:
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", creds.realm or "*", creds.username, 0, creds.password))
        obj = _ProbeAccount(self._on_request_done)
        try:
            obj.create(cfg)
        except pj.Error as exc:
            raise SipSetupError(f"cannot set up the SIP account: {exc_text(exc)}") from None
        account = self._accounts[key] = SipAccount(key, tkey, obj)
        return account

    def _transport(self, tkey: tuple[Any, ...]) -> int:
        self._transport_used[tkey] = time.monotonic()
        if tkey in self._transports:
            return self._transports[tkey]
        kind, family, local_ip, local_port, ca_file, verify, cert_file, key_file, min_version = tkey
        if len(self._transports) >= MAX_TRANSPORTS:
            raise SipSetupError(f"more than {MAX_TRANSPORTS} distinct SIP transports"
                                " (transport, local address, local_port) are busy at once")
        tc = pj.TransportConfig()
        tc.port = local_port
        tc.boundAddress = tc.publicAddress = local_ip
        if kind == "tls":
            # The tls block of probes/tls.py, as pjsip takes it.
            tc.tlsConfig.CaListFile = ca_file
            tc.tlsConfig.verifyServer = verify
            if cert_file:
                tc.tlsConfig.certFile = cert_file
                tc.tlsConfig.privKeyFile = key_file or cert_file
            if min_version:
                tc.tlsConfig.proto = TLS_PROTOCOLS[min_version]
        try:
            tid = int(self.ep.transportCreate(TRANSPORT_TYPES[(kind, family)], tc))
        except pj.Error as exc:
            where = f"{local_ip}:{local_port}" if local_port else local_ip
            raise SipSetupError(f"cannot open a SIP {kind} transport on {where}: "
                                f"{exc_text(exc)}") from None
        self._transports[tkey] = tid
        return tid

    def sweep(self, idle_before: float) -> None:
        """Release accounts idle since ``idle_before``, then transports no account uses."""
        for key, account in list(self._accounts.items()):
            if account.idle and account.last_used <= idle_before:
                del self._accounts[key]  # the last reference: pjsua deletes the account now
        in_use = {a.transport for a in self._accounts.values()}
        for tkey, tid in list(self._transports.items()):
            if tkey not in in_use and self._transport_used.get(tkey, 0) <= idle_before:
                with contextlib.suppress(pj.Error):
                    self.ep.transportClose(tid)
                del self._transports[tkey]
                self._transport_used.pop(tkey, None)

    def forget_in_flight(self, ident: int) -> None:
        """An OPTIONS transaction nobody waits for ended: no account holds it open now."""
        for known in self._accounts.values():
            known.in_flight.discard(ident)

    def release(self) -> list[Any]:
        """Forget every account; return those whose OPTIONS transaction is still open,
        to be kept until ``libDestroy`` has ended it (see probes/sip_endpoint.py)."""
        kept = [account.obj for account in self._accounts.values() if account.in_flight]
        self._accounts.clear()
        return kept
