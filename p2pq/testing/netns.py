"""A cluster of real `p2pq node` processes in network namespaces, for fault tests.

Each node is a host of its own: a network namespace ``<tag>-n<i>`` whose one
interface ``eth0`` (10.250.S.<i+1>/24) is plugged into a Linux bridge with
multicast snooping off, in a namespace ``<tag>-br`` of its own. The nodes run
with mDNS discovery and no ``--peer`` seeds, so they find each other the way
machines in a lab do. The test side (clients, observers) reaches them through
one more veth from the root namespace, 10.250.S.254, with multicast off so the
root namespace takes no part in mDNS. The subnet S is chosen per run among
those the root namespace does not route, so test traffic stays on these links.

Faults are real: ``kill -9`` and restart, SIGSTOP/SIGCONT, and partitions.
A partition is a set of cut node pairs; each node namespace holds one
nftables table whose set ``cut`` lists the addresses it may not talk to, and
two rules drop every IPv4 packet from (input) or to (output) them. That cuts
TCP and mDNS alike, because a multicast datagram carries its sender's
address. Established connections are not reset: packets just vanish, as on a
pulled cable. The test client is never cut.

Names are unique per run (``p2pqns<pid>x<hex>``); a run that died without
cleaning up is swept by the next one (its pid is gone).
"""

from __future__ import annotations

import ast
import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

from p2pq.client import Client, P2PQError
from p2pq.core.types import ZERO_TERM, Term

from .cluster import LocalCluster, LocalNode, wait_for

PORT = 7470
NAME_PREFIX = "p2pqns"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}(\d+)x[0-9a-f]+")
_NFT_TABLE = """table ip p2pq {
  set cut { type ipv4_addr; }
  chain input { type filter hook input priority -10; policy accept; ip saddr @cut drop; }
  chain output { type filter hook output priority -10; policy accept; ip daddr @cut drop; }
}
"""
# Log lines of the node that tell who led when (p2pq.net.node logs these notes).
_NOTE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) p2pq\.node INFO "
                      r"(leader_elected|stepped_down|leader_accepted|node_dead) (\{.*\})$")


def unavailable_reason() -> str | None:
    """Why namespace clusters cannot run here, or None when they can."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return "needs root (network namespaces, veth links, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"needs the `{tool}` command ({package}; .ci/run installs it)"
    name = f"{NAME_PREFIX}{os.getpid()}x{secrets.token_hex(2)}probe"
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"cannot create a network namespace here: {proc.stderr.strip()}"
    try:
        nft = subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=_NFT_TABLE,
                             capture_output=True, text=True)
        if nft.returncode != 0:
            return f"nftables does not work in a namespace here: {nft.stderr.strip()[:200]}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _run(*argv: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete the namespaces (and their processes) of earlier runs whose process is gone."""
    listing = _run("ip", "netns", "list", check=False).stdout.split()
    swept = []
    for name in listing:
        match = _NAME_RE.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        for pid in _run("ip", "netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "netns", "del", name, check=False)
        swept.append(name)
    return swept


def free_subnet() -> str:
    """A 10.250.S prefix that no route of the root namespace covers."""
    routes = _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
    used = []
    for line in routes.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest[:1].isdigit():
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dest, strict=False))
    for _ in range(200):
        s = secrets.randbelow(224) + 16
        net = ipaddress.ip_network(f"10.250.{s}.0/24")
        if not any(net.overlaps(u) for u in used):
            return f"10.250.{s}"
    raise RuntimeError("no free 10.250.x.0/24 subnet for the test network")


@dataclass
class NetnsNode(LocalNode):
    host: str = ""
    namespace: str = ""
    paused: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class NetnsCluster(LocalCluster):
    """N hosts on a private bridge, found by mDNS alone. Node i (n<i+1>) has priority i+1."""

    size: int = 5
    slots: int = 2
    heartbeat_ms: int = 200
    failure_timeout_ms: int = 1000
    subnet: str | None = None
    tag: str = ""
    cuts: set[frozenset[int]] = field(default_factory=set)
    _namespaces: list[str] = field(default_factory=list)
    _host_link: str = ""
    _probes: dict[int, Client] = field(default_factory=dict)

    # -- lifecycle --------------------------------------------------------------------
    def start(self, wait: bool = True, spawn: Iterable[int] | None = None) -> NetnsCluster:
        """Build the network, spawn the nodes (all, or the indexes in `spawn`), wait formed."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        sweep_stale()
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="p2pq-netns-")
            self.base_dir = Path(self._tmp.name)
        from p2pq.net.pki import init_cluster
        init_cluster(self.cluster_dir)
        self.tag = f"{NAME_PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        self.subnet = self.subnet or free_subnet()
        try:
            self._build_network()
        except BaseException:
            self._destroy_network()
            raise
        self.nodes = [self._describe_node(i) for i in range(self.size)]
        for i in (range(self.size) if spawn is None else spawn):
            self._spawn(self.nodes[i])
        if wait:
            self.wait_formed()
        return self

    def stop(self) -> None:
        for i, node in enumerate(self.nodes):
            if node.paused:
                self.resume(i)
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()
        try:
            super().stop()
        finally:
            self._destroy_network()

    def host(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def namespace(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def _describe_node(self, i: int) -> NetnsNode:
        node_id = f"n{i + 1}"
        data_dir = self.base_dir / node_id
        host = self.host(i)
        args = ["node", "--cluster-dir", str(self.cluster_dir), "--data-dir", str(data_dir),
                "--host", host, "--advertise", host, "--port", str(PORT), "--node-id", node_id,
                "--priority", str(i + 1), "--slots", str(self.slots), "--mdns-interface", host,
                "--heartbeat-ms", str(self.heartbeat_ms),
                "--failure-timeout-ms", str(self.failure_timeout_ms), *self.extra_args]
        return NetnsNode(i, node_id, PORT, i + 1, data_dir, args, self.base_dir / f"{node_id}.log",
                         host=host, namespace=self.namespace(i))

    def _spawn(self, node: LocalNode) -> None:
        assert isinstance(node, NetnsNode)
        log = open(node.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "P2PQ_TEST_NODE": node.node_id}
        argv = ["ip", "netns", "exec", node.namespace, sys.executable, "-m", "p2pq", *node.args]
        # `ip netns exec` execs the command: the pid is the node's own, for kill and SIGSTOP.
        node.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        node.paused = False
        log.close()

    # -- the network ------------------------------------------------------------------
    def _build_network(self) -> None:
        br = f"{self.tag}br"
        self._add_namespace(br)
        _run("ip", "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _run("ip", "-n", br, "link", "set", "br0", "up")
        self._host_link = f"pq{self.tag[-6:]}"
        _run("ip", "link", "add", self._host_link, "type", "veth", "peer", "name", "ph", "netns", br)
        _run("ip", "-n", br, "link", "set", "ph", "master", "br0")
        _run("ip", "-n", br, "link", "set", "ph", "up")
        _run("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self._host_link)
        _run("ip", "link", "set", self._host_link, "multicast", "off")
        _run("ip", "link", "set", self._host_link, "up")
        for i in range(self.size):
            ns = self.namespace(i)
            self._add_namespace(ns)
            _run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{i}", "netns", br)
            _run("ip", "-n", br, "link", "set", f"p{i}", "master", "br0")
            _run("ip", "-n", br, "link", "set", f"p{i}", "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=_NFT_TABLE)

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)

    def _destroy_network(self) -> None:
        for ns in reversed(self._namespaces):
            for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        if self._host_link:  # gone with its peer in the bridge namespace; make sure
            _run("ip", "link", "del", self._host_link, check=False)
            self._host_link = ""

    # -- faults -----------------------------------------------------------------------
    def pause(self, i: int) -> None:
        """SIGSTOP: the node freezes mid-whatever, sockets open, and believes nothing changed."""
        node = self.nodes[i]
        if node.running and not node.paused:
            node.process.send_signal(signal.SIGSTOP)
            node.paused = True
            self._drop_probe(i)

    def resume(self, i: int) -> None:
        node = self.nodes[i]
        if node.paused:
            node.process.send_signal(signal.SIGCONT)
            node.paused = False

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[index]
        if node.paused and sig in (signal.SIGKILL, signal.SIGTERM):
            node.paused = False  # SIGKILL ends a stopped process too; SIGTERM needs it awake
            if sig == signal.SIGTERM:
                node.process.send_signal(signal.SIGCONT)
        self._drop_probe(index)
        super().kill(index, sig)

    def restart(self, index: int) -> None:
        self._drop_probe(index)
        super().restart(index)

    def set_cuts(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Cut exactly these node pairs (both ways, TCP and mDNS); every other pair is healed."""
        cuts = {frozenset(p) for p in pairs if p[0] != p[1]}
        for i in range(self.size):
            peers = sorted(self.host(j) for j in range(self.size) if frozenset((i, j)) in cuts)
            script = "flush set ip p2pq cut\n"
            if peers:
                script += f"add element ip p2pq cut {{ {', '.join(peers)} }}\n"
            _run("ip", "netns", "exec", self.namespace(i), "nft", "-f", "-", stdin=script)
        self.cuts = cuts

    def partition(self, *groups: Iterable[int]) -> None:
        """Nodes talk only within their group; nodes in no group are cut from everyone."""
        side = {i: g for g, members in enumerate(groups) for i in members}
        self.set_cuts((i, j) for i in range(self.size) for j in range(i + 1, self.size)
                      if side.get(i, -1 - i) != side.get(j, -1 - j))

    def isolate(self, i: int) -> None:
        self.set_cuts((i, j) for j in range(self.size) if j != i)

    def heal(self) -> None:
        self.set_cuts(())

    # -- looking ----------------------------------------------------------------------
    def probe(self, i: int, timeout_s: float = 1.5) -> Client:
        """A short-deadline client for polling (a paused node must not hold the poller)."""
        if i not in self._probes:
            self._probes[i] = Client(self.nodes[i].address, cluster_dir=self.cluster_dir, failover=False,
                                     timeout_s=timeout_s)
        return self._probes[i]

    def _drop_probe(self, i: int) -> None:
        client = self._probes.pop(i, None)
        if client is not None:
            client.close()

    def view(self, index: int) -> dict:
        return self.probe(index).peers()

    def try_view(self, index: int) -> dict | None:
        try:
            return self.view(index)
        except (P2PQError, OSError):
            return None

    def running_indexes(self) -> list[int]:
        """Nodes alive and awake (a paused node cannot answer)."""
        return [n.index for n in self.nodes if n.running and not n.paused]

    def node_index(self, node_id: str) -> int:
        return next(n.index for n in self.nodes if n.node_id == node_id)

    def wait_leader(self, among: Iterable[int], timeout_s: float = 30.0,
                    newer_than: str | None = None) -> tuple[int, str]:
        """The nodes in `among` agree on one leader among themselves (with a term above `newer_than`)."""
        among = list(among)

        def agreed():
            views = [self.view(i) for i in among]
            pairs = {(v["leader"], v["term"]) for v in views}
            if len(pairs) != 1:
                return None
            (leader, term), = pairs
            if leader is None or self.node_index(leader) not in among:
                return None
            if newer_than is not None and term_key(term) <= term_key(newer_than):
                return None
            return self.node_index(leader), term
        return wait_for(agreed, timeout_s, f"one leader among {[self.nodes[i].node_id for i in among]}")

    def leaders_now(self) -> list[tuple[str, str]]:
        """(node, term) of every reachable node that says it leads."""
        out = []
        for i in self.running_indexes():
            view = self.try_view(i)
            if view is not None and view["role"] == "leader":
                out.append((view["node"], view["term"]))
        return out

    def notes(self) -> list[tuple[float, str, str, dict]]:
        """(at, node, kind, detail) of the leadership notes in every node's log, in time order."""
        out = []
        for node in self.nodes:
            if not node.log_path.exists():
                continue
            for line in node.log_path.read_text(errors="replace").splitlines():
                match = _NOTE_RE.match(line)
                if match is None:
                    continue
                stamp, kind, detail = match.groups()
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                with contextlib.suppress(ValueError, SyntaxError):
                    out.append((at, node.node_id, kind, ast.literal_eval(detail)))
        return sorted(out, key=lambda n: n[0])


def term_key(term: str) -> Term:
    """'7@n3' -> Term(7, 'n3'): terms order by number, then leader id ('' is no term yet)."""
    return Term.parse(term) if term else ZERO_TERM


def wait_port(host: str, port: int, timeout_s: float) -> float:
    """Seconds until `host:port` accepts a TCP connection."""
    import socket
    start = time.monotonic()

    def accepting():
        with socket.create_connection((host, port), timeout=0.5):
            return True
    wait_for(accepting, timeout_s, f"{host}:{port} to accept connections", interval_s=0.02)
    return time.monotonic() - start


__all__ = ["NetnsCluster", "NetnsNode", "unavailable_reason", "sweep_stale", "term_key", "wait_port"]
