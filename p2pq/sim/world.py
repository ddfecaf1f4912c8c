"""A deterministic world for NodeCore: virtual clock, network, disks, executors.

Everything happens in one event heap ordered by (time, sequence). The only
source of chance is the world's ``random.Random(seed)`` (and one per node,
seeded from it), so a seed replays a run exactly; ``trace_hash`` proves it.

The network is a networkx graph over node ids: a message goes from a to b
only while the edge (a, b) exists, both nodes run, and the link does not
drop it. Partitions remove edges; heal restores the full graph.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx

from p2pq.core.events import (ClientRequested, MessageReceived, Note, PeerDiscovered, PersistRecords,
                              PersistTerm, Reply, RunTask, Send, SetTimer, Started, StopTask,
                              TaskCompleted, TimerFired)
from p2pq.core.node import NodeCore
from p2pq.core.tasks import CANCELLED, SUCCEEDED, TaskRecord
from p2pq.core.types import ZERO_TERM, Config, Term

from .history import History


@dataclass(slots=True)
class LinkModel:
    """Per-message latency in seconds, plus loss, duplication and reordering."""

    latency_s: Callable[[random.Random], float] = lambda r: r.uniform(0.0005, 0.002)
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False


@dataclass(slots=True)
class SimNode:
    core: NodeCore
    priority: int
    alive: bool = True
    paused: bool = False
    incarnation: int = 0
    timers: dict[str, float] = field(default_factory=dict)
    disk_term: Term = ZERO_TERM
    disk_records: dict[str, TaskRecord] = field(default_factory=dict)
    inbox: list = field(default_factory=list)  # events held while paused


class World:
    """N simulated nodes running the real NodeCore."""

    def __init__(self, n_nodes: int, seed: int, config: Config | None = None, *,
                 link: LinkModel | None = None, graph: nx.Graph | None = None,
                 task_duration_s: float = 0.05, record_messages: bool = True,
                 discovery: str = "full") -> None:
        self.seed = seed
        self.discovery = discovery  # "full" (mDNS finds all) or "seed" (everyone knows only n1)
        self.rng = random.Random(seed)
        self.config = config or Config()
        self.link = link or LinkModel()
        self.task_duration_s = task_duration_s
        self.now = 0.0
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._seq = 0
        self._trace = hashlib.sha256()
        self._last_delivery: dict[tuple[str, str], float] = {}
        self.ids = [f"n{i + 1}" for i in range(n_nodes)]
        self.full_graph = graph if graph is not None else nx.complete_graph(self.ids)
        self.graph = self.full_graph.copy()
        self.history = History()
        self.messages_by_type: dict[str, int] = {}
        self.record_messages = record_messages
        self.nodes: dict[str, SimNode] = {}
        self._request_ids = 0
        self.client_waiting: dict[tuple[str, int], Callable[[dict], None]] = {}
        for i, node_id in enumerate(self.ids):
            self.nodes[node_id] = SimNode(self._new_core(node_id, i + 1), priority=i + 1)
        for node_id in self.ids:
            self._boot(node_id)

    # -- scheduling ---------------------------------------------------------------
    def _schedule(self, at: float, kind: str, args: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, args))

    def call_at(self, at: float, fn: Callable[[], None]) -> None:
        """Run `fn` (a fault, a client action) at virtual time `at`."""
        self._schedule(at, "call", (fn,))

    def run_until(self, t: float) -> None:
        while self._heap and self._heap[0][0] <= t:
            at, _, kind, args = heapq.heappop(self._heap)
            self.now = at
            if kind == "call":
                args[0]()
            else:
                self._deliver(kind, args)
        self.now = max(self.now, t)

    def run_while(self, condition: Callable[[], bool], deadline: float, step_s: float = 0.1) -> bool:
        """Advance time until `condition()` is false or `deadline`; True if it became false."""
        while condition():
            if self.now >= deadline:
                return False
            self.run_until(min(self.now + step_s, deadline))
        return True

    @property
    def trace_hash(self) -> str:
        return self._trace.hexdigest()[:16]

    # -- node lifecycle ------------------------------------------------------------------
    def _new_core(self, node_id: str, priority: int, node: SimNode | None = None) -> NodeCore:
        rng = random.Random(self.rng.getrandbits(64))
        if node is None:
            return NodeCore(node_id, priority, self.config, rng)
        return NodeCore(node_id, priority, self.config, rng, restored_term=node.disk_term,
                        restored_records=tuple(node.disk_records.values()))

    def _boot(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self._feed(node_id, Started())
        if self.discovery == "full":  # mDNS finds every node on the LAN
            others = [o for o in self.ids if o != node_id]
        else:  # --peer n1 on every node: the rest must come from gossip
            others = [self.ids[0]] if node_id != self.ids[0] else []
        for other in others:
            self._feed(node_id, PeerDiscovered(other, self.nodes[other].priority))

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        node.alive = False
        node.paused = False
        node.inbox.clear()
        node.incarnation += 1
        node.timers.clear()
        self.history.fault(self.now, "crash", node_id)

    def restart(self, node_id: str, keep_disk: bool = True) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        if not keep_disk:
            node.disk_term, node.disk_records = ZERO_TERM, {}
        node.core = self._new_core(node_id, node.priority, node)
        node.alive = True
        self.history.fault(self.now, "restart", node_id)
        self._boot(node_id)

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].paused = True
        self.history.fault(self.now, "pause", node_id)

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.paused = False
        self.history.fault(self.now, "resume", node_id)
        held, node.inbox = node.inbox, []
        for kind, args in held:
            self._deliver(kind, args)

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between different groups."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        for a, b in list(self.graph.edges):
            if side.get(a, -1) != side.get(b, -2):
                self.graph.remove_edge(a, b)
        self.history.fault(self.now, "partition", [list(g) for g in groups])

    def cut(self, a: str, b: str) -> None:
        if self.graph.has_edge(a, b):
            self.graph.remove_edge(a, b)

    def heal(self) -> None:
        self.graph = self.full_graph.copy()
        self.history.fault(self.now, "heal", None)

    def link_up(self, a: str, b: str) -> bool:
        return self.graph.has_edge(a, b)

    # -- delivering events ---------------------------------------------------------------
    def _feed(self, node_id: str, event: Any) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        if node.paused:
            node.inbox.append(("event", (node_id, node.incarnation, event)))
            return
        self._trace.update(f"{self.now:.6f} {node_id} {event!r}".encode())
        commands = node.core.handle(event, self.now)
        self._carry_out(node_id, node, commands)

    def _deliver(self, kind: str, args: tuple) -> None:
        node_id, incarnation, event = args[:3]
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation:
            return
        if kind == "timer":
            if node.timers.get(event.name) != args[3]:
                return  # replaced by a later SetTimer
            if node.paused:
                node.inbox.append((kind, args))
                return
            del node.timers[event.name]
        self._feed(node_id, event)

    def _carry_out(self, node_id: str, node: SimNode, commands: list) -> None:
        for command in commands:
            match command:
                case Send(to, message):
                    self._send(node_id, to, message)
                case SetTimer(name, at_s):
                    node.timers[name] = at_s
                    self._schedule(at_s, "timer", (node_id, node.incarnation, TimerFired(name), at_s))
                case Reply(request_id, body):
                    callback = self.client_waiting.pop((node_id, request_id), None)
                    if callback is not None:
                        callback(body)
                case RunTask(task_id, attempt_id, spec):
                    self._run_task(node_id, node, task_id, attempt_id, spec)
                case StopTask(task_id, attempt_id):
                    self.history.execution_end(attempt_id, self.now, CANCELLED)
                    self._schedule(self.now, "event", (node_id, node.incarnation, TaskCompleted(
                        task_id, attempt_id, CANCELLED, None, self.now)))
                case PersistTerm(term):
                    node.disk_term = max(node.disk_term, term)
                case PersistRecords(records):
                    for r in records:
                        node.disk_records[r.task_id] = r
                case Note(kind, detail):
                    self.history.note(self.now, node_id, kind, detail)

    def _send(self, src: str, dst: str, message: Any) -> None:
        if self.record_messages:
            t = message.TYPE
            self.messages_by_type[t] = self.messages_by_type.get(t, 0) + 1
        target = self.nodes.get(dst)
        if target is None or not self.graph.has_edge(src, dst):
            return
        if self.link.drop and self.rng.random() < self.link.drop:
            return
        copies = 2 if self.link.duplicate and self.rng.random() < self.link.duplicate else 1
        for _ in range(copies):
            at = self.now + self.link.latency_s(self.rng)
            if not self.link.reorder:  # TCP: one connection per direction keeps order
                at = max(at, self._last_delivery.get((src, dst), 0.0))
                self._last_delivery[(src, dst)] = at
            self._schedule(at, "event", (dst, target.incarnation, MessageReceived(src, message)))

    def _run_task(self, node_id: str, node: SimNode, task_id: str, attempt_id: str, spec) -> None:
        duration = float(spec.args[0]) if spec.target == "sleep" and spec.args else self.task_duration_s
        record = node.core.executing.get(attempt_id)
        dispatched_at = record.attempt(attempt_id).started_at if record else self.now
        self.history.execution_start(task_id, attempt_id, node_id, self.now, dispatched_at)

        def done() -> None:
            if node.alive and node.incarnation == incarnation and not self.history.execution_ended(attempt_id):
                self.history.execution_end(attempt_id, self.now, SUCCEEDED)
                self._feed(node_id, TaskCompleted(task_id, attempt_id, SUCCEEDED, {"value": None}, self.now))

        incarnation = node.incarnation
        self.call_at(self.now + duration, done)

    # -- clients ---------------------------------------------------------------------------
    def request(self, via: str, request: Any, on_reply: Callable[[dict], None]) -> bool:
        """A client asks node `via`; False if that node is down (connection refused)."""
        node = self.nodes[via]
        if not node.alive:
            return False
        self._request_ids += 1
        rid = self._request_ids
        self.client_waiting[(via, rid)] = on_reply
        self._feed(via, ClientRequested(rid, request))
        return True

    def leaders(self) -> list[str]:
        from p2pq.core.types import Role
        return [i for i, n in self.nodes.items() if n.alive and n.core.role is Role.LEADER]
