"""The pjsua2 worker (probes/sip_endpoint.py) at pjsua's compiled-in limits, against sipp on loopback.

Its call table and its socket budget are tested in test_sip.py (40 INVITEs; 40 refused at once);
here: more distinct transports than pjsua holds, and a stopped endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import IN_CI, no_sip_reason

if importlib.util.find_spec("pjsua2") is None:  # the optional extra, as in test_sip.py
    if IN_CI and not no_sip_reason():
        raise ImportError("pjsua2 is not installed (CI must have it: .ci/run installs .[sip])")
    pytest.skip(f"pjsua2 is not installed ({no_sip_reason() or 'pip install probewatch[sip]'})",
                allow_module_level=True)

from exporter.config import parse_config
from probes import sip
from probes.sip_accounts import MAX_TRANSPORTS
from probes.sip_endpoint import SipEndpoint
from probes.sip_request import SipRequest
from tests.probes.test_sip import config, run_together, sipp
from tests.support import free_port


@pytest.fixture(scope="module", autouse=True)
def _endpoint_destroyed_at_the_end() -> Iterator[None]:
    yield
    sip.SipProbe.shutdown()


def test_more_local_ports_than_pjsua_has_transports_fail_one_probe_with_why(tmp_path: Path) -> None:
    with sipp(tmp_path, "options-200.xml") as peer:
        template = parse_config(config(peer.uri), "t.yml").probes[0]
        ports = [free_port(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(MAX_TRANSPORTS + 1)]
        specs = [dataclasses.replace(template, name=f"p{port}",
                                     options=dataclasses.replace(template.options, local_port=port))
                 for port in ports]
        # one at a time, so which one finds the table full is known: the last
        results = [run_together([spec])[0] for spec in specs]
    # pjsua holds 8 transports and the worker keeps one for itself (the wake transport)
    assert [r.up for r in results] == [True] * MAX_TRANSPORTS + [False]
    last = results[-1]
    assert last.message.endswith(f"more than {MAX_TRANSPORTS} distinct SIP transports (transport,"
                                 " local address, local_port) are busy at once"), last.message
    assert "Traceback" not in last.message


def test_a_stopped_endpoint_answers_at_once_that_it_is_stopping() -> None:
    sip.SipProbe.shutdown()  # one pjsua2 library per process: the shared endpoint goes first
    endpoint = SipEndpoint()
    endpoint.start()
    assert endpoint.stop() is True

    async def ask() -> tuple[int, str, str]:
        handle = endpoint.submit(SipRequest("OPTIONS", "sip:127.0.0.1:9", "udp", 4, "127.0.0.1"))
        outcome = await asyncio.wait_for(handle.future, 2)
        return outcome.code, outcome.text, outcome.origin

    assert asyncio.run(ask()) == (-1, "the exporter is stopping", "stopping")
