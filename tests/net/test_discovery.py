"""Tests for p2pq.net.discovery (mDNS discovery with python-zeroconf).

* In-process tests run several Discovery instances in one event loop on the
  loopback interface only (``interfaces=["127.0.0.1"]``), so no mDNS packet
  leaves the host. Every test uses its own random cluster fingerprint, so
  concurrent runs (or other p2pq nodes on this host) cannot interfere.
* Namespace tests (root + iproute2) build a private LAN: network namespaces
  joined by a Linux bridge that lives in a namespace of its own, addresses in
  10.250.0.0/24 only inside those namespaces, and run one discovery process
  (tests/net/discovery_probe.py) per namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from p2pq.net.discovery import DiscoveredPeer, Discovery, instance_label

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
PROBE = HERE / "discovery_probe.py"
LOG_NAME = "p2pq.net.discovery"

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAVE_IP = shutil.which("ip") is not None
NETNS_REASON = "requires root and iproute2 for network namespaces"
needs_netns = pytest.mark.skipif(not (IS_ROOT and HAVE_IP), reason=NETNS_REASON)


# --------------------------------------------------------------------------- helpers


def _loopback_multicast_works() -> bool:
    """Can a multicast datagram sent via 127.0.0.1 be received on 127.0.0.1?"""
    group = f"239.255.{random.randint(0, 255)}.{random.randint(1, 254)}"
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("", 0))
        port = rx.getsockname()[1]
        rx.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(group) + socket.inet_aton("127.0.0.1"),
        )
        rx.settimeout(1.0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        token = secrets.token_bytes(8)
        tx.sendto(token, (group, port))
        while True:
            data, _ = rx.recvfrom(64)
            if data == token:
                return True
    except OSError:
        return False
    finally:
        rx.close()
        tx.close()


@pytest.fixture(scope="module")
def loopback_mdns() -> Iterator[None]:
    """Make sure mDNS over the loopback interface works, or skip.

    On this kernel it works without any setting (zeroconf pins the outgoing
    interface with IP_MULTICAST_IF). Elsewhere ``lo`` may need the MULTICAST
    flag: set it when root, and restore it afterwards.
    """
    if _loopback_multicast_works():
        yield
        return
    if not (IS_ROOT and HAVE_IP):
        pytest.skip("multicast on the loopback interface does not work here "
                    "(needs `ip link set lo multicast on`, as root)")
    subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=False)
    try:
        if not _loopback_multicast_works():
            pytest.skip("multicast on the loopback interface does not work, even with "
                        "`ip link set lo multicast on`")
        yield
    finally:
        subprocess.run(["ip", "link", "set", "lo", "multicast", "off"], check=False)


@dataclass
class Node:
    disc: Discovery
    seen: dict[str, DiscoveredPeer] = field(default_factory=dict)
    calls: list[DiscoveredPeer] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    found_at: dict[str, float] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.disc.node_id


class Cluster:
    """Discovery instances on loopback sharing a fresh random fingerprint."""

    def __init__(self) -> None:
        self.fp = secrets.token_hex(32)
        self.tag = secrets.token_hex(3)
        self.nodes: list[Node] = []

    def make(self, name: str, *, port: int, priority: int = 1, fp: str | None = None,
             version: int = 1, node_id: str | None = None, on_peer_extra: Callable[[DiscoveredPeer], None] | None = None,
             **kwargs: object) -> Node:
        node_id = node_id or f"{name}-{self.tag}"
        node: Node

        def on_peer(peer: DiscoveredPeer) -> None:
            node.calls.append(peer)
            node.seen[peer.node_id] = peer
            node.found_at.setdefault(peer.node_id, time.monotonic())
            if on_peer_extra is not None:
                on_peer_extra(peer)

        kwargs.setdefault("interfaces", ["127.0.0.1"])
        disc = Discovery(
            node_id=node_id,
            port=port,
            priority=priority,
            fingerprint=fp or self.fp,
            version=version,
            on_peer=on_peer,
            on_peer_lost=lambda nid: node.lost.append(nid),
            **kwargs,  # type: ignore[arg-type]
        )
        node = Node(disc)
        self.nodes.append(node)
        return node

    async def start(self, *nodes: Node) -> None:
        await asyncio.gather(*(n.disc.start() for n in nodes))
        for n in nodes:
            if not n.disc.running:
                pytest.skip("zeroconf cannot use 127.0.0.1:5353 here (port taken by another "
                            "mDNS stack without SO_REUSEPORT?)")

    async def close(self) -> None:
        await asyncio.gather(*(n.disc.close() for n in self.nodes), return_exceptions=True)


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll cond until true; return the elapsed seconds or fail after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def all_see_each_other(nodes: list[Node]) -> bool:
    ids = {n.node_id for n in nodes}
    return all(ids - {n.node_id} <= set(n.seen) for n in nodes)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --------------------------------------------------------------------- unit tests


def test_instance_label_is_the_node_id_when_it_is_a_valid_label() -> None:
    assert instance_label("node-1") == "node-1"
    long_id = "x" * 80
    assert instance_label(long_id).startswith("p2pq-")
    assert instance_label(long_id) == instance_label(long_id)
    assert instance_label("a.b") != "a.b"
    assert "." not in instance_label("a.b")


def test_constructor_validates_arguments() -> None:
    kw = dict(node_id="x", port=7000, priority=0, fingerprint="ab", version=1, on_peer=lambda p: None)
    with pytest.raises(ValueError):
        Discovery(**{**kw, "port": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Discovery(**{**kw, "node_id": ""})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Discovery(**{**kw, "fingerprint": ""})  # type: ignore[arg-type]


# ------------------------------------------------------------ in-process, loopback


def test_cold_start_three_nodes_find_each_other(loopback_mdns: None) -> None:
    async def scenario() -> None:
        c = Cluster()
        nodes = [c.make(f"n{i}", port=17000 + i, priority=i) for i in range(3)]
        try:
            t0 = time.monotonic()
            await c.start(*nodes)
            started = time.monotonic() - t0
            await wait_until(lambda: all_see_each_other(nodes), 15, "three nodes to see each other")
            total = time.monotonic() - t0
            print(f"\ncold start (3 nodes, loopback): start() took {started:.2f}s, all found after {total:.2f}s")
            for n in nodes:
                assert n.node_id not in n.seen, "a node must never report itself"
                for other in nodes:
                    if other is n:
                        continue
                    assert n.seen[other.node_id] == DiscoveredPeer(
                        node_id=other.node_id, host="127.0.0.1", port=other.disc.port,
                        priority=other.disc.priority, version=1,
                    )
                # Duplicates are harmless but must not spam.
                assert len(n.calls) <= 2 * (len(nodes) - 1), n.calls
                assert n.disc.advertised
        finally:
            await c.close()

    run(scenario())


def test_late_joiner_finds_earlier_nodes_and_is_found(loopback_mdns: None) -> None:
    async def scenario() -> None:
        c = Cluster()
        a = c.make("a", port=17100, priority=5)
        b = c.make("b", port=17101, priority=7)
        try:
            await c.start(a, b)
            await wait_until(lambda: all_see_each_other([a, b]), 15, "a and b to see each other")
            # Scenario, not synchronisation: let the earlier nodes' announcements
            # and the browsers' first queries be long over before the late joiner.
            await asyncio.sleep(2.0)
            late = c.make("late", port=17102, priority=1)
            t0 = time.monotonic()
            await c.start(late)
            await wait_until(lambda: {a.node_id, b.node_id} <= set(late.seen), 15,
                             "the late joiner to find the earlier nodes")
            t_late_found = time.monotonic() - t0
            await wait_until(lambda: all_see_each_other([a, b, late]), 15,
                             "the earlier nodes to find the late joiner")
            t_all = time.monotonic() - t0
            print(f"\nlate joiner (loopback): found earlier nodes {t_late_found:.2f}s after start(), "
                  f"all found {t_all:.2f}s (start() itself ~1s of probing)")
            assert late.seen[a.node_id].priority == 5
            assert a.seen[late.node_id].port == 17102
        finally:
            await c.close()

    run(scenario())


def test_requery_recovers_missed_announcements(loopback_mdns: None) -> None:
    """A node whose cache lost everything and whose browser is silent recovers by re-query."""

    async def scenario() -> None:
        c = Cluster()
        a = c.make("a", port=17200)
        b = c.make("b", port=17201)
        deaf = c.make("deaf", port=17202, requery_interval_s=0.5, requery_max_interval_s=1.0)
        try:
            await c.start(a, b, deaf)
            await wait_until(lambda: all_see_each_other([a, b, deaf]), 15, "all to see each other")
            # Simulate a node that missed everything: silence its browser, drop
            # every record it cached and everything it reported.
            d = deaf.disc
            assert d._browser is not None and d._aiozc is not None
            await d._browser.async_cancel()
            zc = d._aiozc.zeroconf
            zc.cache.async_remove_records(
                [r for name in zc.cache.names() for r in zc.cache.async_entries_with_name(name)]
            )
            d._peers.clear()
            deaf.seen.clear()
            t0 = time.monotonic()
            await wait_until(lambda: {a.node_id, b.node_id} <= set(deaf.seen), 15,
                             "the re-query task to find the peers again")
            print(f"\nrecovered by re-query after {time.monotonic() - t0:.2f}s (interval 0.5s)")
        finally:
            await c.close()

    run(scenario())


def test_other_cluster_and_other_version_are_ignored(loopback_mdns: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOG_NAME)

    async def scenario() -> None:
        c = Cluster()
        a = c.make("a", port=17300, requery_interval_s=0.3, requery_max_interval_s=0.3)
        b = c.make("b", port=17301)
        stranger = c.make("stranger", port=17302, fp=secrets.token_hex(32))
        future = c.make("future", port=17303, version=2)
        try:
            await c.start(a, b, stranger, future)
            await wait_until(lambda: all_see_each_other([a, b]), 15, "a and b to see each other")

            def noted(instance: str, what: str) -> bool:
                return any(instance in r.getMessage() and what in r.getMessage()
                           for r in caplog.records if r.name == LOG_NAME)

            await wait_until(lambda: noted(stranger.disc.instance_name, "other cluster"), 15,
                             "a to notice (and ignore) the other cluster's node")
            await wait_until(lambda: noted(future.disc.instance_name, "protocol version 2"), 15,
                             "a to notice (and ignore) the other version's node")
            # Let a's fast re-query run a few more times: still ignored, logged once.
            await asyncio.sleep(1.5)
            for n in (a, b):
                assert stranger.node_id not in n.seen
                assert future.node_id not in n.seen
            # The foreign nodes, for their part, see nobody of "their" cluster.
            assert stranger.seen == {}
            assert future.seen == {}
            mine = [r for r in caplog.records if r.name == LOG_NAME and r.levelno == logging.DEBUG
                    and stranger.disc.instance_name in r.getMessage() and "other cluster" in r.getMessage()]
            # Each of a, b, future logs it at most once.
            assert 1 <= len(mine) <= 3, [r.getMessage() for r in mine]
        finally:
            await c.close()

    run(scenario())


def test_goodbye_change_and_failing_callback(loopback_mdns: None) -> None:
    async def scenario() -> None:
        c = Cluster()
        boom_calls: list[str] = []

        def boom(peer: DiscoveredPeer) -> None:
            boom_calls.append(peer.node_id)
            raise RuntimeError("callback bug")

        a = c.make("a", port=17400, on_peer_extra=boom)
        b = c.make("b", port=17401, priority=3)
        try:
            await c.start(a, b)
            await wait_until(lambda: all_see_each_other([a, b]), 15, "a and b to see each other")
            assert boom_calls  # the raising callback did not stop anything
            await b.disc.close()
            await wait_until(lambda: b.node_id in a.lost, 10, "a to hear b's goodbye")
            assert b.node_id not in a.disc.peers
            # b comes back with another port and priority: reported again, with the new values.
            b2 = c.make("b", node_id=b.node_id, port=17499, priority=9)
            await c.start(b2)
            await wait_until(lambda: a.disc.peers.get(b.node_id, None) is not None
                             and a.disc.peers[b.node_id].port == 17499, 15, "a to see b's new incarnation")
            assert a.seen[b.node_id].priority == 9
        finally:
            await c.close()

    run(scenario())


def test_crash_and_identical_restart_is_reported_again(loopback_mdns: None) -> None:
    """A node that dies without a goodbye and comes back with the same id, port and
    priority is reported again (new incarnation), so the driver can reconnect."""

    async def scenario() -> None:
        c = Cluster()
        a = c.make("a", port=17500)
        b = c.make("b", port=17501, priority=4)
        try:
            await c.start(a, b)
            await wait_until(lambda: all_see_each_other([a, b]), 15, "a and b to see each other")
            reports_before = sum(p.node_id == b.node_id for p in a.calls)
            # "Crash": forget our registrations so close() sends no goodbye.
            assert b.disc._aiozc is not None
            zc = b.disc._aiozc.zeroconf
            zc.registry.async_remove(zc.registry.async_get_service_infos())
            await b.disc.close()
            b2 = c.make("b", node_id=b.node_id, port=17501, priority=4)
            await c.start(b2)
            await wait_until(lambda: sum(p.node_id == b.node_id for p in a.calls) > reports_before, 15,
                             "a to report b's new incarnation")
            assert a.lost == []
            assert a.seen[b.node_id].port == 17501 and a.seen[b.node_id].priority == 4
        finally:
            await c.close()

    run(scenario())


def test_unusable_interface_is_one_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    """An address that is not on this host (TEST-NET-3): no packet is sent anywhere."""
    caplog.set_level(logging.WARNING, logger=LOG_NAME)

    async def scenario() -> None:
        d = Discovery(node_id="lonely", port=7000, priority=1, fingerprint="ab", version=1,
                      on_peer=lambda p: None, interfaces=["203.0.113.9"], requery_interval_s=0.1)
        await d.start()
        assert not d.running and not d.advertised
        await asyncio.sleep(0.5)  # a few background retries happen meanwhile
        await d.close()
        await d.close()  # idempotent
        assert d._tasks == set() and d._loop_task is None

    run(scenario())
    warnings = [r for r in caplog.records if r.name == LOG_NAME and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "mDNS discovery unavailable" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


_SEND_ERROR_SCRIPT = r"""
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from p2pq.net.discovery import Discovery
async def main():
    d = Discovery(node_id="mute", port=7000, priority=1, fingerprint="ab", version=1,
                  on_peer=print, interfaces=["10.251.0.1"], requery_interval_s=0.2, requery_max_interval_s=0.2)
    await d.start()
    await asyncio.sleep(1.5)
    print("running", d.running, flush=True)
    await d.close()
    print("closed", flush=True)
asyncio.run(main())
"""


@pytest.mark.skipif(not (IS_ROOT and HAVE_IP and shutil.which("unshare")),
                    reason="requires root, iproute2 and unshare for a private network namespace")
def test_send_failure_is_one_clear_warning_line() -> None:
    """In a private namespace, the only interface is down: every multicast send fails."""
    setup = ("ip link set lo up && ip link add v0 type veth peer name v1 && "
             "ip addr add 10.251.0.1/24 dev v0 && exec \"$0\" -c \"$1\"")
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", setup, sys.executable, _SEND_ERROR_SCRIPT],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "running True" in proc.stdout and "closed" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "cannot send multicast" in lines[0] and "Network is unreachable" in lines[0]


# ------------------------------------------------------------- network namespaces


class Probe:
    """One discovery_probe.py process; its JSON lines are collected by a thread."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT,
        )
        self.events: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(raw)
                with self._lock:
                    self.events.append(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def peers(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return {str(e["node_id"]): e for e in self.events if e["event"] == "peer"}

    def started(self) -> dict[str, object] | None:
        with self._lock:
            return next((e for e in self.events if e["event"] == "started"), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class NetnsLan:
    """N namespaces ``<tag>-n<i>`` (eth0 = 10.250.0.<i+1>/24) on a bridge in ``<tag>-br``."""

    SUBNET = "10.250.0"

    def __init__(self, size: int) -> None:
        self.tag = f"p2pq-dt-{secrets.token_hex(3)}"
        self.size = size
        self.bridge_ns = f"{self.tag}-br"
        self.namespaces: list[str] = []
        self.probes: list[Probe] = []

    def ns(self, i: int) -> str:
        return f"{self.tag}-n{i}"

    def addr(self, i: int) -> str:
        return f"{self.SUBNET}.{i + 1}"

    @staticmethod
    def ip(*args: str) -> None:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def create(self) -> None:
        self.ip("netns", "add", self.bridge_ns)
        self.namespaces.append(self.bridge_ns)
        br = self.bridge_ns
        self.ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        self.ip("-n", br, "link", "set", "br0", "up")
        for i in range(self.size):
            ns = self.ns(i)
            self.ip("netns", "add", ns)
            self.namespaces.append(ns)
            self.ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{i}", "netns", br)
            self.ip("-n", br, "link", "set", f"p{i}", "master", "br0")
            self.ip("-n", br, "link", "set", f"p{i}", "up")
            self.ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            self.ip("-n", ns, "link", "set", "lo", "up")
            self.ip("-n", ns, "link", "set", "eth0", "up")
            self.ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def set_port(self, i: int, up: bool) -> None:
        """Plug/unplug namespace i's cable at the bridge."""
        self.ip("-n", self.bridge_ns, "link", "set", f"p{i}", "up" if up else "down")

    def spawn(self, i: int, *, fp: str, extra: list[str] | None = None) -> Probe:
        argv = ["ip", "netns", "exec", self.ns(i), sys.executable, str(PROBE),
                "--node-id", f"{self.tag}-n{i}", "--port", str(7000 + i), "--priority", str(i),
                "--fp", fp, *(extra or [])]
        probe = Probe(argv, name=self.ns(i))
        self.probes.append(probe)
        return probe

    def node_id(self, i: int) -> str:
        return f"{self.tag}-n{i}"

    def destroy(self) -> None:
        for probe in self.probes:
            with contextlib.suppress(Exception):
                probe.stop()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.namespaces.clear()


@pytest.fixture
def lan() -> Iterator[NetnsLan]:
    if not (IS_ROOT and HAVE_IP):
        pytest.skip(NETNS_REASON)
    lan = NetnsLan(3)
    try:
        try:
            lan.create()
        except RuntimeError as exc:
            pytest.skip(f"{NETNS_REASON}: cannot build the test LAN here ({exc})")
        yield lan
    finally:
        lan.destroy()


def wait_sync(cond: Callable[[], bool], timeout: float, what: str, lan: NetnsLan) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            details = "\n".join(
                f"{p.name}: rc={p.proc.poll()} peers={sorted(p.peers())} stderr={p.stderr[-5:]}"
                for p in lan.probes
            )
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{details}")
        time.sleep(0.05)
    return time.monotonic() - start


def _expect_all_found(lan: NetnsLan, probes: list[Probe], fp_ok: bool = True) -> None:
    for i, probe in enumerate(probes):
        peers = probe.peers()
        assert lan.node_id(i) not in peers
        for j in range(len(probes)):
            if j == i:
                continue
            p = peers[lan.node_id(j)]
            assert (p["host"], p["port"], p["priority"], p["version"]) == (lan.addr(j), 7000 + j, j, 1)
        assert not any("Traceback" in line for line in probe.stderr), probe.stderr


@needs_netns
@pytest.mark.slow
def test_netns_three_hosts_staggered_start(lan: NetnsLan) -> None:
    fp = secrets.token_hex(32)
    probes = [lan.spawn(0, fp=fp), lan.spawn(1, fp=fp)]
    ids = [lan.node_id(i) for i in range(3)]
    t01 = wait_sync(lambda: ids[1] in probes[0].peers() and ids[0] in probes[1].peers(), 30,
                    "the first two hosts to find each other", lan)
    # Scenario: the third host comes up several seconds after the others.
    time.sleep(4.0)
    probes.append(lan.spawn(2, fp=fp))
    late = probes[2]
    wait_sync(lambda: set(ids[:2]) <= set(late.peers()), 30, "the late host to find both others", lan)
    wait_sync(lambda: all(ids[2] in p.peers() for p in probes[:2]), 30,
              "the early hosts to find the late one", lan)
    _expect_all_found(lan, probes)
    t_late = max(float(e["t"]) for e in late.peers().values()) - late.spawned_at
    t_early = max(float(p.peers()[ids[2]]["t"]) for p in probes[:2]) - late.spawned_at
    started = late.started()
    t_start = float(started["t"]) - late.spawned_at if started else float("nan")
    print(f"\nnetns: first two found each other {t01:.2f}s after spawn; late host: process spawn -> "
          f"start() returned {t_start:.2f}s, found both others {t_late:.2f}s, "
          f"found by both {t_early:.2f}s after its spawn")


@needs_netns
@pytest.mark.slow
def test_netns_host_that_missed_announcements_recovers(lan: NetnsLan) -> None:
    """Host 2 runs first, then its cable is unplugged while 0 and 1 start and
    announce themselves; once plugged back in, the re-query task must make
    everyone find everyone."""
    fp = secrets.token_hex(32)
    fast = ["--requery", "2", "--requery-max", "6"]
    ids = [lan.node_id(i) for i in range(3)]
    p2 = lan.spawn(2, fp=fp, extra=fast)
    wait_sync(lambda: p2.started() is not None, 30, "host 2 to start", lan)
    lan.set_port(2, up=False)
    p0 = lan.spawn(0, fp=fp, extra=fast)
    p1 = lan.spawn(1, fp=fp, extra=fast)
    wait_sync(lambda: ids[1] in p0.peers() and ids[0] in p1.peers(), 30,
              "hosts 0 and 1 to find each other", lan)
    time.sleep(3.0)  # scenario: their announcements and first queries are over
    assert p2.peers() == {} and ids[2] not in p0.peers() and ids[2] not in p1.peers()
    lan.set_port(2, up=True)
    t = wait_sync(lambda: all(set(ids) - {ids[i]} <= set(p.peers()) for i, p in enumerate([p0, p1, p2])),
                  40, "everyone to find everyone after the cable is back", lan)
    _expect_all_found(lan, [p0, p1, p2])
    print(f"\nnetns: recovered {t:.2f}s after the cable was plugged back in (requery 2s..6s)")


@needs_netns
def test_netns_other_cluster_ignored(lan: NetnsLan) -> None:
    fp = secrets.token_hex(32)
    ids = [lan.node_id(i) for i in range(3)]
    p0 = lan.spawn(0, fp=fp)
    p1 = lan.spawn(1, fp=fp)
    p2 = lan.spawn(2, fp=secrets.token_hex(32), extra=["--debug"])
    wait_sync(lambda: ids[1] in p0.peers() and ids[0] in p1.peers(), 30, "hosts 0 and 1 to find each other", lan)
    wait_sync(lambda: sum("other cluster" in line for line in p2.stderr) >= 2, 30,
              "host 2 to see and ignore both nodes of the other cluster", lan)
    assert p2.peers() == {}
    assert ids[2] not in p0.peers() and ids[2] not in p1.peers()
