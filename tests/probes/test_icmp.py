"""icmp kind: real echo requests to loopback and to a network namespace the test builds.

The namespace tests make two namespaces joined by a veth pair, give the far end
addresses from the documentation ranges (192.0.2.0/24, 2001:db8::/32) that
exist only in there, and let nftables drop, halve or reject the echo requests
to some of them.  The probe runs inside the near namespace, through
`ip netns exec ... probewatch probe`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import parse_config
from probes import icmp, runner
from probes.base import Result
from tests.probes.run import once, run_once
from tests.support import ROOT, missing, probewatch_argv, require_binary

FIXTURES = ROOT / "tests" / "fixtures"


def config(target: str, options: str = "", timeout: str = "3s", name: str = "ping") -> str:
    block = f"\n    icmp: {{{options}}}" if options else ""
    return f"""
probes:
  - name: {name}
    kind: icmp
    target: "{target}"
    period: 10s
    timeout: {timeout}{block}
"""


def reading(result: Result, metric: str, **labels: str) -> float | None:
    for r in result.readings:
        if r.metric == metric and all((k, v) in r.labels for k, v in labels.items()):
            return r.value
    return None


@pytest.fixture(autouse=True)
def _close_shared_sockets() -> Iterator[None]:
    yield
    icmp.IcmpProbe.shutdown()


# --- loopback -----------------------------------------------------------------------


def test_loopback_v4_answers_every_request_with_rtt_and_no_loss() -> None:
    result, latency = run_once(config("127.0.0.1", "count: 3, interval: 50ms"))
    assert result.up, result.message
    assert result.code == 3
    assert reading(result, icmp.LOSS) == 0
    avg, high = (reading(result, icmp.RTT, stat=s) for s in ("avg", "max"))
    assert avg is not None and high is not None
    assert 0 < avg <= high < 0.5
    assert reading(result, icmp.RTT, stat="min") is None  # 8 series a healthy icmp probe: min only in the message
    low = float(result.message.split("rtt min/avg/max ")[1].split("/")[0]) / 1000
    assert 0 < low <= avg
    assert 0.1 <= latency < 1.0  # two 50ms gaps, then the last reply
    assert result.message.startswith("3/3 replies from 127.0.0.1")


def test_loopback_v6_answers() -> None:
    if not os.path.exists("/proc/net/if_inet6"):
        missing("IPv6 on the loopback interface (::1)")
    result, _ = run_once(config("::1", "count: 2, interval: 20ms"))
    assert (result.up, result.code) == (True, 2), result.message
    assert reading(result, icmp.LOSS) == 0


def test_host_name_is_resolved_in_the_asked_family() -> None:
    result, _ = run_once(config("localhost", "count: 1, ip_family: ip4"))
    assert (result.up, result.code) == (True, 1), result.message
    assert "from localhost" in result.message


def test_defaults_are_three_requests_one_second_apart() -> None:
    spec = parse_config(config("127.0.0.1"), "t.yml").probes[0]
    assert (spec.options.count, spec.options.interval, spec.options.payload_size) == (3, 1.0, 56)
    assert spec.options.max_loss is None and spec.options.reply_timeout is None


def test_reply_timeout_bounds_each_wait() -> None:
    spec = parse_config(config("127.0.0.1", "count: 2, interval: 100ms, reply_timeout: 1s"),
                        "t.yml").probes[0]
    assert icmp.IcmpProbe(spec).wait == 1.0


def test_a_thousand_probes_share_one_socket_and_no_threads() -> None:
    """Many concurrent runs to 127.0.x.y: every one gets its replies, no thread is added."""
    template = parse_config(config("127.0.0.1", "count: 2, interval: 100ms"), "t.yml").probes[0]
    specs = [dataclasses.replace(template, name=f"p{i}", target=f"127.0.{i // 250}.{i % 250 + 1}")
             for i in range(1000)]
    threads_before = threading.active_count()
    seen_threads: list[int] = []

    async def go() -> list[Result]:
        async def one(spec: object) -> Result:
            result, _, _ = await runner.run_once(icmp.IcmpProbe(spec), spec)
            return result

        tasks = [asyncio.ensure_future(one(s)) for s in specs]
        await asyncio.sleep(0.05)
        seen_threads.append(threading.active_count())
        results = await asyncio.gather(*tasks)
        assert len(icmp._PINGERS) == 1  # one shared socket for all of them
        return results

    started = time.monotonic()
    results = asyncio.run(go())
    elapsed = time.monotonic() - started
    assert [r.code for r in results if not r.up] == []
    assert {r.code for r in results} == {2}
    assert seen_threads == [threads_before]
    assert elapsed < 3.0


def test_cut_runs_leave_no_waiting_requests_behind() -> None:
    """The scheduler cuts a run at its timeout; the shared socket forgets its requests."""
    spec = parse_config(config("127.0.0.1", "count: 5, interval: 1s", timeout="5s"),
                        "t.yml").probes[0]

    async def go() -> int:
        task = asyncio.ensure_future(once(icmp.IcmpProbe(spec)))
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sum(len(p.waiting) for p in icmp._PINGERS.values())

    assert asyncio.run(go()) == 0


# --- config errors ----------------------------------------------------------------

ICMP_FIXTURES = sorted(FIXTURES.glob("invalid-icmp-*.yml"))


def test_fixtures_cover_the_icmp_checks() -> None:
    """Each bad icmp config has its fixture; tests/exporter/test_config.py checks every
    invalid-*.yml against its '# expect:' lines."""
    names = {p.stem.removeprefix("invalid-icmp-") for p in ICMP_FIXTURES}
    assert {"count", "max-loss", "timeout-ms", "interval", "family", "target",
            "unknown-key", "payload-size"} <= names


# --- network namespaces ---------------------------------------------------------------

NEAR, FAR = "192.0.2.1", "192.0.2.2"
DROPPED, HALVED, REJECTED = "192.0.2.3", "192.0.2.4", "192.0.2.5"
FAR6, DROPPED6 = "2001:db8::2", "2001:db8::3"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def require_netns() -> None:
    require_binary("ip")
    require_binary("nft")
    require_binary("setpriv")
    probe_name = f"pwcheck{os.getpid()}"
    made = sh("ip", "netns", "add", probe_name, check=False)
    if made.returncode != 0:
        missing(f"permission to create network namespaces (ip netns add: {made.stderr.strip()};"
                " run the tests as root or with CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    sh("ip", "netns", "del", probe_name, check=False)


@dataclass
class Namespaces:
    near: str
    far: str


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespaces]:
    require_netns()
    ns = Namespaces(f"pwicmp{os.getpid()}n", f"pwicmp{os.getpid()}f")
    try:
        for name in (ns.near, ns.far):
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "link", "add", "pwnear", "netns", ns.near, "type", "veth",
           "peer", "name", "pwfar", "netns", ns.far)
        sh("ip", "-n", ns.near, "addr", "add", f"{NEAR}/24", "dev", "pwnear")
        sh("ip", "-n", ns.near, "addr", "add", "2001:db8::1/64", "dev", "pwnear", "nodad")
        for address in (FAR, DROPPED, HALVED, REJECTED):
            sh("ip", "-n", ns.far, "addr", "add", f"{address}/24", "dev", "pwfar")
        for address in (FAR6, DROPPED6):
            sh("ip", "-n", ns.far, "addr", "add", f"{address}/64", "dev", "pwfar", "nodad")
        sh("ip", "-n", ns.near, "link", "set", "pwnear", "up")
        sh("ip", "-n", ns.far, "link", "set", "pwfar", "up")
        rules = f"""
table inet probewatch_test {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {DROPPED} icmp type echo-request drop
    ip daddr {HALVED} icmp type echo-request numgen inc mod 2 == 1 drop
    ip daddr {REJECTED} icmp type echo-request reject with icmp type host-unreachable
    ip6 daddr {DROPPED6} icmpv6 type echo-request drop
  }}
}}
"""
        loaded = subprocess.run(["ip", "netns", "exec", ns.far, "nft", "-f", "-"], input=rules,
                                capture_output=True, text=True, timeout=30)
        if loaded.returncode != 0:
            missing(f"nftables in a network namespace (nft -f: {loaded.stderr.strip()})")
        yield ns
    finally:
        for name in (ns.near, ns.far):
            sh("ip", "netns", "del", name, check=False)


@dataclass
class Seen:
    up: bool
    code: int
    reason: str
    message: str
    latency: float
    samples: list[str]

    def sample(self, metric: str, stat: str = "") -> float | None:
        for line in self.samples:
            name = line.split("{", 1)[0]
            if name == metric and (not stat or f'stat="{stat}"' in line):
                return float(line.rsplit(" ", 1)[1])
        return None


def probe_in(ns: str, tmp_path: Path, target: str, options: str, timeout: str = "3s",
             sysctl_groups: str | None = None, net_raw: bool = True) -> Seen:
    """Run `probewatch probe` inside namespace ``ns`` and read what it printed."""
    path = tmp_path / f"icmp-{abs(hash((target, options)))}.yml"
    path.write_text(config(target, options, timeout))
    if sysctl_groups is not None:
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
           f"net.ipv4.ping_group_range={sysctl_groups}")
    argv = ["ip", "netns", "exec", ns]
    if not net_raw:
        argv += ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"]
    argv += probewatch_argv("probe", "ping", f"--config.file={path}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    fields: dict[str, str] = {}
    samples: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("  "):
            samples.append(line.strip())
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    assert "result" in fields, proc.stdout + proc.stderr
    return Seen(fields["result"] == "up", int(fields["code"]), fields.get("reason", ""),
                fields.get("message", ""), float(fields["latency"].rstrip("s")), samples)


def test_netns_peer_that_answers_is_up(netns: Namespaces, tmp_path: Path) -> None:
    seen = probe_in(netns.near, tmp_path, FAR, "count: 3, interval: 50ms")
    assert (seen.up, seen.code) == (True, 3), seen.message
    assert seen.sample(icmp.LOSS) == 0


def test_dropped_requests_are_a_timeout_with_full_loss(netns: Namespaces, tmp_path: Path) -> None:
    seen = probe_in(netns.near, tmp_path, DROPPED, "count: 2, interval: 100ms, reply_timeout: 400ms")
    assert (seen.up, seen.code, seen.reason) == (False, 0, "timeout")
    assert seen.sample(icmp.LOSS) == 1
    assert seen.sample(icmp.RTT, "avg") is None  # no reply, no round trip to report
    assert 0.45 <= seen.latency < 1.5  # the last request's 400ms wait, not the 3s timeout
    assert seen.message == f"0/2 replies from {DROPPED} within 400ms each (at least one reply)"


def test_a_run_cut_at_the_probe_timeout_reports_the_loss_it_saw(netns: Namespaces,
                                                                tmp_path: Path) -> None:
    """No timeout_ms: the run waits until the scheduler's cut, and timed_out still gives the loss."""
    seen = probe_in(netns.near, tmp_path, DROPPED, "count: 2, interval: 100ms", timeout="1s")
    assert (seen.up, seen.code, seen.reason) == (False, 0, "timeout")
    assert seen.sample(icmp.LOSS) == 1
    assert 1.0 <= seen.latency < 2.0  # cut at the probe's timeout, no margin before it
    assert seen.message == f"0/2 replies from {DROPPED} within 1s (at least one reply)"


def test_dropped_ipv6_requests_are_a_timeout(netns: Namespaces, tmp_path: Path) -> None:
    answered = probe_in(netns.near, tmp_path, FAR6, "count: 1")
    assert answered.up, answered.message
    seen = probe_in(netns.near, tmp_path, DROPPED6, "count: 1, reply_timeout: 300ms")
    assert (seen.up, seen.code, seen.reason) == (False, 0, "timeout")


@pytest.mark.parametrize(("max_loss", "up"), [(None, True), (0.5, True), (0.25, False)])
def test_max_loss_decides_up_when_half_the_requests_are_lost(
        netns: Namespaces, tmp_path: Path, max_loss: float | None, up: bool) -> None:
    extra = "" if max_loss is None else f", max_loss: {max_loss}"
    seen = probe_in(netns.near, tmp_path, HALVED, f"count: 4, interval: 20ms, reply_timeout: 300ms{extra}")
    assert (seen.up, seen.code) == (up, 2), seen.message
    assert seen.sample(icmp.LOSS) == 0.5
    if not up:
        assert seen.reason == "timeout"
        assert "(loss at most 25%)" in seen.message


def test_icmp_error_reply_is_unreachable(netns: Namespaces, tmp_path: Path) -> None:
    seen = probe_in(netns.near, tmp_path, REJECTED, "count: 2, interval: 50ms, reply_timeout: 500ms",
                    sysctl_groups="1 0")  # raw socket: ICMP errors reach it
    assert (seen.up, seen.code, seen.reason) == (False, 0, "unreachable")
    assert "destination host unreachable" in seen.message
    assert seen.latency < 1.0


def test_no_route_is_unreachable(netns: Namespaces, tmp_path: Path) -> None:
    seen = probe_in(netns.near, tmp_path, "198.51.100.7", "count: 1")
    assert (seen.up, seen.reason) == (False, "unreachable")
    assert "Network is unreachable" in seen.message


# --- privileges, each in a namespace whose sysctl the test sets ------------------------


@pytest.fixture
def bare_netns() -> Iterator[str]:
    require_netns()
    name = f"pwicmp{os.getpid()}b"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def test_unprivileged_datagram_socket_is_used_where_the_sysctl_allows(
        bare_netns: str, tmp_path: Path) -> None:
    seen = probe_in(bare_netns, tmp_path, "127.0.0.1", "count: 2, interval: 20ms",
                    sysctl_groups="0 2147483647", net_raw=False)
    assert (seen.up, seen.code) == (True, 2), seen.message


def test_raw_socket_is_used_with_cap_net_raw(bare_netns: str, tmp_path: Path) -> None:
    seen = probe_in(bare_netns, tmp_path, "127.0.0.1", "count: 2, interval: 20ms",
                    sysctl_groups="1 0", net_raw=True)
    assert (seen.up, seen.code) == (True, 2), seen.message


def test_config_check_names_both_fixes_when_no_icmp_socket_may_be_opened(
        bare_netns: str, tmp_path: Path) -> None:
    path = tmp_path / "icmp.yml"
    path.write_text(config("127.0.0.1", "count: 1"))
    sh("ip", "netns", "exec", bare_netns, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    proc = subprocess.run(
        ["ip", "netns", "exec", bare_netns, "setpriv", "--bounding-set", "-net_raw",
         "--inh-caps", "-net_raw", *probewatch_argv("check", f"--config.file={path}")],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}:3: probes[0] (ping): icmp: cannot open ICMP sockets: unprivileged ICMP is not"
        f" allowed for group {os.getgid()} (net.ipv4.ping_group_range = 1 0) and raw sockets need"
        " CAP_NET_RAW; fix one: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\", or grant"
        " CAP_NET_RAW (systemd AmbientCapabilities=CAP_NET_RAW, Kubernetes capabilities add"
        " NET_RAW)",
        "1 problem(s) found",
    ]


def test_inactive_probe_needs_no_privileges(bare_netns: str, tmp_path: Path) -> None:
    path = tmp_path / "icmp.yml"
    path.write_text(config("127.0.0.1", "count: 1") + "    active: false\n")
    sh("ip", "netns", "exec", bare_netns, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    proc = subprocess.run(
        ["ip", "netns", "exec", bare_netns, "setpriv", "--bounding-set", "-net_raw",
         *probewatch_argv("check", f"--config.file={path}")],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
