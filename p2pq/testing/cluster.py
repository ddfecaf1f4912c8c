"""A cluster of real `p2pq node` processes on this machine, for tests, the demo and benchmarks.

Every node is a separate process (`python -m p2pq node ...`) on loopback
with its own data directory, all sharing one freshly made cluster CA. Waits
are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from p2pq.client import Client, P2PQError


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports that were free a moment ago."""
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((host, 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (P2PQError, OSError) as exc:
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class LocalNode:
    index: int
    node_id: str
    port: int
    priority: int
    data_dir: Path
    args: list[str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """N nodes on loopback. Node i has priority i+1, so the last node leads first."""

    size: int = 3
    slots: int = 2
    mdns: bool = False
    seeds: bool = True
    extra_args: list[str] = field(default_factory=list)
    node_args: dict[int, list[str]] = field(default_factory=dict)  # more flags for node i (the last wins)
    node_env: dict[int, dict[str, str]] = field(default_factory=dict)  # more environment for node i
    base_dir: Path | None = None
    nodes: list[LocalNode] = field(default_factory=list)
    _tmp: Any = None
    _clients: dict[int, Client] = field(default_factory=dict)

    def __enter__(self) -> LocalCluster:
        """Start; a cluster that fails to form prints its nodes' logs and is stopped, not leaked."""
        try:
            return self.start()
        except BaseException:
            print(self.logs(), file=sys.stderr)
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------
    def start(self, wait: bool = True) -> LocalCluster:
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="p2pq-cluster-")
            self.base_dir = Path(self._tmp.name)
        from p2pq.net.pki import init_cluster
        init_cluster(self.cluster_dir)
        ports = free_ports(self.size)
        for i, port in enumerate(ports):
            self.nodes.append(self._describe(i, port, ports))
        for node in self.nodes:
            self._spawn(node)
        if wait:
            self.wait_formed()
        return self

    @property
    def cluster_dir(self) -> Path:
        return self.base_dir / "cluster"

    def _describe(self, i: int, port: int, ports: list[int]) -> LocalNode:
        node_id = f"node{i + 1}"
        data_dir = self.base_dir / node_id
        args = ["node", "--cluster-dir", str(self.cluster_dir), "--data-dir", str(data_dir),
                "--host", "127.0.0.1", "--port", str(port), "--node-id", node_id,
                "--priority", str(i + 1), "--slots", str(self.slots)]
        if not self.mdns:
            args.append("--no-mdns")
        else:  # loopback only: test traffic never leaves this machine
            args += ["--mdns-interface", "127.0.0.1"]
        if self.seeds and i > 0:
            args += ["--peer", f"127.0.0.1:{ports[0]}"]
        args += self.extra_args + self.node_args.get(i, [])
        return LocalNode(i, node_id, port, i + 1, data_dir, args, self.base_dir / f"{node_id}.log")

    def _spawn(self, node: LocalNode) -> None:
        log = open(node.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.node_env.get(node.index, {})}
        node.process = subprocess.Popen([sys.executable, "-m", "p2pq", *node.args], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for node in self.nodes:
            if node.running:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- faults ---------------------------------------------------------------
    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[index]
        self._drop_client(index)
        if node.running:
            node.process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                node.process.wait(timeout=10)

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        if node.running:
            raise RuntimeError(f"{node.node_id} is still running")
        self._spawn(node)

    # -- looking ------------------------------------------------------------------
    def client(self, index: int, timeout_s: float = 15.0) -> Client:
        if index not in self._clients:
            self._clients[index] = Client(self.nodes[index].address, cluster_dir=self.cluster_dir, failover=False,
                                          timeout_s=timeout_s)
        return self._clients[index]

    def _drop_client(self, index: int) -> None:
        client = self._clients.pop(index, None)
        if client is not None:
            client.close()

    def view(self, index: int) -> dict:
        return self.client(index).peers()

    def leader(self, via: int | None = None) -> tuple[int, str] | None:
        """(index of the leader, term) as the running nodes agree on it, or None."""
        views = [self.view(i) for i in ([via] if via is not None else self.running_indexes())]
        leaders = {(v["leader"], v["term"]) for v in views}
        if len(leaders) != 1:
            return None
        (leader_id, term), = leaders
        index = next((n.index for n in self.nodes if n.node_id == leader_id), None)
        if index is None or not self.nodes[index].running:
            return None
        return index, term

    def running_indexes(self) -> list[int]:
        return [n.index for n in self.nodes if n.running]

    def wait_formed(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Every running node sees every running node alive, and all agree on one leader:
        the highest-ranked running node (a higher node that joined a lower one's cluster
        catches up and then takes over; until then the cluster is still forming)."""
        want = {self.nodes[i].node_id for i in self.running_indexes()}

        def formed():
            for i in self.running_indexes():
                view = self.view(i)
                alive = {m["node"] for m in view["members"] if m["alive"]}
                if not want <= alive or view["role"] not in ("leader", "member"):
                    return None
            agreed = self.leader()
            if agreed is None or agreed[0] != max(self.running_indexes()):  # priority is index + 1
                return None
            return agreed
        return wait_for(formed, timeout_s, f"a cluster of {len(want)} led by its highest node")

    def logs(self) -> str:
        return "\n".join(f"--- {n.node_id} ---\n{n.log_path.read_text(errors='replace')[-4000:]}"
                         for n in self.nodes if n.log_path.exists())
