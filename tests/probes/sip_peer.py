"""A second pjsua2 process that answers OPTIONS (pjsua does, with 200 OK) on loopback.

    python tests/probes/sip_peer.py --address 127.0.0.1 --transport udp
    python tests/probes/sip_peer.py --address ::1 --transport tls --cert C --key K

It binds port 0, prints ``listening PORT`` once ready and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import pjsua2 as pj

TYPES = {("udp", 4): pj.PJSIP_TRANSPORT_UDP, ("tcp", 4): pj.PJSIP_TRANSPORT_TCP,
         ("tls", 4): pj.PJSIP_TRANSPORT_TLS, ("udp", 6): pj.PJSIP_TRANSPORT_UDP6,
         ("tcp", 6): pj.PJSIP_TRANSPORT_TCP6, ("tls", 6): pj.PJSIP_TRANSPORT_TLS6}
LIFETIME = 300.0  # seconds: a forgotten peer goes away on its own


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    ep.audDevManager().setNoDev()
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = tc.publicAddress = args.address
    if args.transport == "tls":
        tc.tlsConfig.certFile = args.cert
        tc.tlsConfig.privKeyFile = args.key
    family = 6 if ":" in args.address else 4
    tid = ep.transportCreate(TYPES[(args.transport, family)], tc)
    ep.libStart()
    port = ep.transportGetInfo(tid).localName.rpartition(":")[2]
    print(f"listening {port}", flush=True)
    deadline = time.monotonic() + LIFETIME
    while not stop and time.monotonic() < deadline:
        ep.libHandleEvents(50)
    ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
