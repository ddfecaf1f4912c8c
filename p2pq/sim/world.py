"""A deterministic world for NodeCore: virtual clock, network, disks, executors.

Everything happens in one event heap ordered by (time, sequence). Chance
comes only from ``random.Random`` streams derived from the seed (one for the
network, one for faults, one for clients, one per node incarnation), so a
seed replays a run exactly and ``trace_hash`` proves it. Separate streams
keep, say, a change in the workload from shifting every fault of a seed.

With ``codec=True`` (the default) every message a node sends and every
client request goes through the real wire codec on its way: ``to_wire``,
a msgpack frame with the transport's size limit, then ``from_wire`` with
every check of the edge (schema.py). A message the codec refuses is a bug
in the core (it said something no node would accept) and is counted in
``codec_errors``; a client request it refuses is answered ``invalid`` at
the edge, as a real node does, and never reaches the core.

The network is a directed networkx graph over node ids: a message goes from
a to b only while the edge a -> b exists and b runs. Partitions remove
edges (one-way partitions remove one direction); heal restores the full
graph. Each directed link may carry its own LinkModel (latency, loss,
duplication, reordering).

Performance matters (sweeps run thousands of seeds), so the hot path avoids
repr, string dispatch and networkx lookups: heap entries carry the bound
method to call, and the set of live edges is cached on every topology change.
"""

from __future__ import annotations

import hashlib
import heapq
from heapq import heappush
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import networkx as nx

from p2pq.core.errors import ErrorCode, acknowledged_ids, error
from p2pq.core.events import (ClientRequested, ForgetPeer, ForgetRecords, MessageReceived, Note, PeerDiscovered,
                              PeerRefused, PersistRecords, PersistTerm, Push, Reply, RunTask, Send, SetTimer, Started, StopTask,
                              TaskCompleted, TimerFired, bind_commands, carry_out)
from p2pq.core.messages import DecodeError, Dispatch, ForwardReply, decode_client_request, from_wire, to_wire
from p2pq.net.framing import FrameError, decode_body, encode_frame
from p2pq.core.node import NodeCore
from p2pq.core.tasks import CANCELLED, SUCCEEDED, Attempt, TaskRecord, TaskSpec
from p2pq.core.types import ZERO_TERM, Config, Role, Term

from .history import History, Leadership
from .links import LAN, LinkModel

_LEADER = Role.LEADER
_TRACE_CHUNK = 4096  # trace entries hashed at a time, to bound memory on long runs
REDIAL_S = 0.05  # the transport's first redial after a connection drops (BACKOFF_INITIAL_S)


@dataclass(slots=True)
class NodeClock:
    """A machine's clock as its core reads it: the driver's ProtocolClock (p2pq/net/clock.py).

    It starts at the machine's wall clock (true time + wall_offset_s) and then
    runs at `rate` (1.0: true speed). A step of the wall clock moves
    wall_offset_s only, so the running core never sees it (the driver's clock
    is monotonic); the next boot reads it.
    """

    rate: float = 1.0
    base_world_s: float = 0.0
    base_local_s: float = 0.0
    wall_offset_s: float = 0.0

    def local(self, t: float) -> float:
        return self.base_local_s + self.rate * (t - self.base_world_s)

    def world(self, local_s: float) -> float:
        return self.base_world_s + (local_s - self.base_local_s) / self.rate

    def set_rate(self, t: float, rate: float) -> None:
        self.base_local_s, self.base_world_s, self.rate = self.local(t), t, rate

    def boot(self, t: float) -> None:
        self.base_local_s, self.base_world_s = t + self.wall_offset_s, t


@dataclass(slots=True, eq=False)
class SimNode:
    id: str
    priority: int
    core: NodeCore
    alive: bool = True
    paused: bool = False
    incarnation: int = 0
    timers: dict[str, float] = field(default_factory=dict)
    disk_term: Term = ZERO_TERM
    disk_records: dict[str, TaskRecord] = field(default_factory=dict)
    disk_forgotten: dict[str, None] = field(default_factory=dict)  # tombstones of pruned tasks
    inbox: list = field(default_factory=list)   # events (timers as tuples) held while paused
    running: set[str] = field(default_factory=set)  # attempts in a slot, as in Executor
    waiting: list = field(default_factory=list)  # (priority, arrival, RunTask) for a slot: a heap, as in Executor
    leadership: Leadership | None = None        # the LEADER interval now open
    clock: NodeClock = field(default_factory=NodeClock)


class World:
    """N simulated nodes running the real NodeCore."""

    def __init__(self, n_nodes: int, seed: int, config: Config | None = None, *,
                 link: LinkModel | None = None, graph: nx.Graph | None = None,
                 task_duration_s: float = 0.05, record_messages: bool = True,
                 discovery: str = "full", priorities: list[int] | None = None,
                 boot_spread_s: float = 0.2, codec: bool = True, preload: int = 0,
                 preload_arg_bytes: int = 0) -> None:
        self.seed = seed
        self.codec = codec
        self.codec_errors: list[str] = []  # messages the core sent that the wire refused
        self._decoded_records: dict[int, tuple[TaskRecord, TaskRecord]] = {}
        self.discovery = discovery  # "full" (mDNS finds all) or "seed" (everyone knows only n1)
        self.rng = random.Random(f"{seed}:faults")
        self.rng_net = random.Random(f"{seed}:net")
        self.rng_clients = random.Random(f"{seed}:clients")
        self.config = config or Config()
        self.link = link or LAN
        self.links: dict[tuple[str, str], LinkModel] = {}
        self.task_duration_s = task_duration_s
        self.record_messages = record_messages
        self.now = 0.0
        self.fault_end_s = float("inf")  # set by the runner: when faults must be over
        self.at_heal: list[Callable[[], None]] = []  # undos of faults held until the final heal
        self.keep_crashed_down = False  # set at the final heal of a run with restart_at_heal=False
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._seq = 0
        self._trace: list[tuple] = []
        self._trace_digest = hashlib.sha256()
        self._last_delivery: dict[tuple[str, str], float] = {}
        self.ids = [f"n{i + 1}" for i in range(n_nodes)]
        base = graph if graph is not None else nx.complete_graph(self.ids)
        self.full_graph = base.to_directed() if not base.is_directed() else base.copy()
        self.graph = self.full_graph.copy()
        self._up: set[tuple[str, str]] = set(self.graph.edges)
        self.history = History()
        self.messages_by_type: dict[str, int] = {}
        self.client_waiting: dict[tuple[str, int], Callable[[dict], None]] = {}
        self._request_ids = 0
        self._do = bind_commands(self)  # each handler takes (node, command)
        self.peers_forgotten: list[tuple[float, str, str]] = []  # (when, by whom, whom)
        self.nodes: dict[str, SimNode] = {}
        self.records_sent: dict[tuple[str, str, str], int] = {}  # task records carried: (type, from, to)
        self._preloaded = self._preload(preload, preload_arg_bytes)
        self._install(priorities or list(range(1, n_nodes + 1)), boot_spread_s)

    def _preload(self, count: int, arg_bytes: int) -> dict[str, TaskRecord]:
        """`count` finished tasks on every disk, as after a long day of work (replicated
        everywhere, acknowledged before the run): the state a restart must not resend.
        One object per record, shared by every node (records are immutable)."""
        records: dict[str, TaskRecord] = {}
        pad = ("x" * arg_bytes,) if arg_bytes else ()
        for i in range(count):
            task_id = f"old-{i:06d}"
            spec = TaskSpec("builtin", "sleep", (0.01, *pad), priority=1 + i % 9)
            attempt = Attempt(f"0.n1.{i}", "n1", 0.0, 0.01, SUCCEEDED, {"value": None})
            records[task_id] = TaskRecord(task_id, spec, (0, i + 1), 0.0, (attempt,))
            self.history.invoke(task_id, spec.priority, 0.0, "preload")
            self.history.ack(task_id, 0.0, None, True)
        return records

    def _install(self, priorities: list[int], boot_spread_s: float) -> None:
        """Rack the machines and schedule their power-on.

        Machines are switched on at slightly different moments, so their
        heartbeat ticks are out of phase, as in a real room; booting all at
        t=0 would make every failure detector fire in lockstep.
        """
        boot = random.Random(f"{self.seed}:boot")
        for node_id, priority in zip(self.ids, priorities):
            node = SimNode(node_id, priority, None, alive=False)  # type: ignore[arg-type]
            node.disk_records = dict(self._preloaded)
            node.core = self._new_core(node_id, priority, 0, node if self._preloaded else None)
            self.nodes[node_id] = node
            self._schedule(boot.uniform(0.0, boot_spread_s), self._power_on, (node,))

    # -- scheduling ---------------------------------------------------------------
    def _schedule(self, at: float, fn: Callable, args: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, fn, args))

    def call_at(self, at: float, fn: Callable[[], None]) -> None:
        """Run `fn` (a fault, a client action) at virtual time `at`."""
        self._schedule(max(at, self.now), fn, ())

    def run_until(self, t: float) -> None:
        heap, pop = self._heap, heapq.heappop
        while heap and heap[0][0] <= t:
            at, _, fn, args = pop(heap)
            self.now = at
            fn(*args)
        if t > self.now:
            self.now = t

    def run_while(self, condition: Callable[[], bool], deadline: float, step_s: float = 0.1) -> bool:
        """Advance time until `condition()` is false or `deadline`; True if it became false."""
        while condition():
            if self.now >= deadline:
                return False
            self.run_until(min(self.now + step_s, deadline))
        return True

    @property
    def trace_hash(self) -> str:
        """A fingerprint of every step: time, node, what it handled, how much it said."""
        digest = self._trace_digest.copy()
        digest.update(repr(self._trace).encode())
        return digest.hexdigest()[:16]

    # -- node lifecycle ------------------------------------------------------------------
    def _new_core(self, node_id: str, priority: int, incarnation: int,
                  node: SimNode | None = None) -> NodeCore:
        rng = random.Random(f"{self.seed}:core:{node_id}:{incarnation}")
        if node is None:
            return NodeCore(node_id, priority, self.config, rng)
        return NodeCore(node_id, priority, self.config, rng, restored_term=node.disk_term,
                        restored_records=tuple(node.disk_records.values()),
                        restored_forgotten=tuple(node.disk_forgotten))

    def _power_on(self, node: SimNode) -> None:
        node.alive = True
        self._boot(node)

    def _boot(self, node: SimNode) -> None:
        node.clock.boot(self.now)
        self._feed(node, Started())
        if self.discovery == "full":  # mDNS finds every node on the LAN
            others = [o for o in self.ids if o != node.id]
        else:  # --peer n1 on every node: the rest must come from gossip
            others = [self.ids[0]] if node.id != self.ids[0] else []
        for other in others:
            self._feed(node, PeerDiscovered(other, self.nodes[other].priority))

    def crash(self, node_id: str, power_off: bool = False) -> None:
        """kill -9: the process and its timers vanish; its disk stays. Its
        machine refuses the dials that follow, unless the power is off."""
        node = self.nodes[node_id]
        if not node.alive:
            return
        self._end_leadership(node)
        node.alive = node.paused = False
        node.inbox.clear()
        node.running.clear()
        node.waiting.clear()
        node.incarnation += 1
        node.timers.clear()
        self.history.fault(self.now, "power_off" if power_off else "crash", node_id)
        if not power_off:
            self._refuse_dials(node_id)

    def _refuse_dials(self, node_id: str) -> None:
        """The crashed node's connections reset; each peer that reaches its
        machine redials at once and is refused (the transport's PeerRefused)."""
        rng = self.rng_net
        for other in self.ids:
            key = (other, node_id)
            peer = self.nodes[other]
            if other == node_id or key not in self._up or not peer.alive:
                continue
            link = self.links.get(key, self.link) if self.links else self.link
            at = self.now + 2 * link.latency(rng) + REDIAL_S
            self._schedule(at, self._feed_if, (peer, peer.incarnation, PeerRefused(node_id), "PeerRefused"))

    def restart(self, node_id: str, keep_disk: bool = True) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        if not keep_disk:
            node.disk_term, node.disk_records, node.disk_forgotten = ZERO_TERM, {}, {}
        node.core = self._new_core(node_id, node.priority, node.incarnation, node)
        node.alive = True
        self.history.fault(self.now, "restart", node_id)
        self._boot(node)

    def pause(self, node_id: str) -> None:
        """SIGSTOP: the node hears nothing and says nothing until resumed; it keeps its state."""
        node = self.nodes[node_id]
        if node.alive and not node.paused:
            node.paused = True
            self.history.fault(self.now, "pause", node_id)

    def resume(self, node_id: str) -> None:
        """SIGCONT: what arrived meanwhile is handled now, late, in one batch (a stale leader wakes).

        One batch, because that is what the runtime's pump does with every
        event that queued up while the process stood still.
        """
        node = self.nodes[node_id]
        if not node.paused:
            return
        node.paused = False
        self.history.fault(self.now, "resume", node_id)
        held, node.inbox = node.inbox, []
        events = []
        for item in held:
            if type(item) is tuple:  # a timer that came due: still the live one?
                _, name, at_s = item
                if node.timers.get(name) == at_s:
                    del node.timers[name]
                    events.append(TimerFired(name))
            else:
                events.append(item)
        if events:
            self._step(node, events, f"resume:{len(events)}")

    def set_clock_rate(self, node_id: str, rate: float) -> None:
        """The node's clock runs at `rate` times true speed from now on (a drifting or faked clock)."""
        if not 0.0 < rate:
            raise ValueError("a clock rate must be positive")
        self.nodes[node_id].clock.set_rate(self.now, rate)
        self.history.fault(self.now, "clock_rate", f"{node_id} x{rate:g}")

    def step_wall_clock(self, node_id: str, by_s: float) -> None:
        """An NTP step of the node's wall clock: the running core never sees it, its next boot does."""
        self.nodes[node_id].clock.wall_offset_s += by_s
        self.history.fault(self.now, "clock_step", f"{node_id} {by_s:+g} s")

    # -- the network -----------------------------------------------------------------------
    def partition(self, *groups: list[str]) -> None:
        """Cut every link between different groups (a node in no group is cut off from all)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        self.graph.remove_edges_from([(a, b) for a, b in self.graph.edges
                                      if side.get(a, -1) != side.get(b, -2)])
        self._topology_changed("partition", [list(g) for g in groups])

    def cut(self, a: str, b: str, both_ways: bool = True) -> None:
        """Cut a -> b (and b -> a unless `both_ways` is False: a one-way partition)."""
        pairs = [(a, b), (b, a)] if both_ways else [(a, b)]
        self.graph.remove_edges_from([p for p in pairs if self.graph.has_edge(*p)])
        self._topology_changed("cut", [a, b] if both_ways else f"{a}->{b}")

    def set_topology(self, graph: nx.DiGraph, label: str = "topology") -> None:
        """Replace the network by `graph` (directed; an undirected graph means both ways)."""
        self.graph = graph.to_directed() if not graph.is_directed() else graph.copy()
        self.graph.add_nodes_from(self.ids)
        self._topology_changed(label, sorted(self.graph.edges))

    def heal(self) -> None:
        """Every partition ends (link faults are separate: see heal_links)."""
        self.graph = self.full_graph.copy()
        self._topology_changed("heal", None)

    def set_link(self, model: LinkModel, edges: list[tuple[str, str]] | None = None) -> None:
        """Links `edges` (default: all) behave like `model` until heal_links()."""
        for edge in edges if edges is not None else list(self.full_graph.edges):
            self.links[edge] = model
        self.history.fault(self.now, "links", repr(model))

    def heal_links(self) -> None:
        self.links = {}
        self.history.fault(self.now, "heal_links", None)

    def link_up(self, a: str, b: str) -> bool:
        return (a, b) in self._up

    def _topology_changed(self, kind: str, arg: Any) -> None:
        self._up = set(self.graph.edges)
        self.history.fault(self.now, kind, arg)

    # -- delivering events ---------------------------------------------------------------
    def _feed(self, node: SimNode, event: Any) -> None:
        if not node.alive:
            return
        if node.paused:
            node.inbox.append(event)
            return
        kind = event.message.TYPE if type(event) is MessageReceived else type(event).__name__
        self._step(node, (event,), kind)

    def _step(self, node: SimNode, events: tuple | list, kind: str, due_s: float = float("-inf")) -> None:
        """One turn of the node's pump: the core handles `events`, the world carries out the commands.

        A timer's step reads at least the time it was due (`due_s`, the node's
        clock): converting that time to the world's and back may round below it.
        """
        now = node.clock.local(self.now)
        step = node.core.handle_batch(events, now if now >= due_s else due_s)
        self._trace.append((self.now, node.id, kind, len(step)))
        if len(self._trace) >= _TRACE_CHUNK:
            self._trace_digest.update(repr(self._trace).encode())
            self._trace = []
        carry_out(step, self._do, node)  # durable first, then the actions; a simulator bug raises
        if (node.core.role is _LEADER) is not (node.leadership is not None):
            self._leadership_changed(node)

    def _feed_if(self, node: SimNode, incarnation: int, event: Any, kind: str) -> None:
        """Deliver `event` unless the node died (or died and came back) since it was sent."""
        if node.incarnation != incarnation or not node.alive:
            return
        if node.paused:
            node.inbox.append(event)
            return
        self._step(node, (event,), kind)

    def _timer(self, node: SimNode, incarnation: int, name: str, at_s: float) -> None:
        if node.incarnation != incarnation or node.timers.get(name) != at_s:
            return  # the node restarted, or a later SetTimer replaced this one
        due_s = node.clock.world(at_s)
        if due_s > self.now:  # its clock slowed down since the timer was set: not yet due
            self._schedule(due_s, self._timer, (node, incarnation, name, at_s))
            return
        if node.paused:
            node.inbox.append(("timer", name, at_s))
            return
        del node.timers[name]
        self._step(node, (TimerFired(name),), "TimerFired", at_s)

    def _leadership_changed(self, node: SimNode) -> None:
        if node.core.role is _LEADER:
            node.leadership = Leadership(node.id, str(node.core.term), self.now)
            self.history.leaderships.append(node.leadership)
        else:
            self._end_leadership(node)

    def _end_leadership(self, node: SimNode) -> None:
        if node.leadership is not None:
            node.leadership.end_s = self.now
            node.leadership = None

    # -- carrying out commands ---------------------------------------------------------
    def _do_send(self, node: SimNode, command: Send) -> None:
        # The hottest path of the simulator: every message goes through here.
        message = command.message
        kind = message.TYPE
        if self.codec:
            message = self._through_the_wire(node, message)
            if message is None:
                return
        counts = self.messages_by_type
        counts[kind] = counts.get(kind, 0) + 1
        records = getattr(message, "records", None)
        if records:
            key = (kind, node.id, command.to)
            self.records_sent[key] = self.records_sent.get(key, 0) + len(records)
        if type(message) is ForwardReply:
            self._observe_ack(node, message.body)
        elif type(message) is Dispatch:
            self.history.dispatch(message.record.task_id, message.attempt_id, self.now)
        key = (node.id, command.to)
        if key not in self._up:
            return  # lost in the partition (or no such node)
        target = self.nodes[command.to]
        if not target.alive:
            return  # connection refused
        link = self.links.get(key, self.link) if self.links else self.link
        rng = self.rng_net
        if link.drop and rng.random() < link.drop:
            return
        copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
        args = (target, target.incarnation, MessageReceived(node.id, message), kind)
        for _ in range(copies):
            at = self.now + link.latency(rng)
            if not link.reorder:  # TCP: one connection per direction keeps order
                last = self._last_delivery.get(key, 0.0)
                if at < last:
                    at = last
                self._last_delivery[key] = at
            self._seq += 1
            heappush(self._heap, (at, self._seq, self._feed_if, args))

    def _through_the_wire(self, node: SimNode, message: Any) -> Any:
        """The message as the receiver decodes it from a real frame; None if the codec refuses it.

        The whole message is always encoded (so the frame limit and msgpack's
        types apply to all of it). Task records are immutable and the codec
        is a pure function, so a record object that has been through the
        codec once decodes to the same value every time: state offers and
        snapshots, which resend most of the table, decode only the records
        not seen before and reuse the earlier decoding of the rest.
        """
        try:
            frame = encode_frame(to_wire(message))
            records = getattr(message, "records", None)
            if not records:
                return from_wire(decode_body(frame[4:]))
            memo = self._decoded_records
            fresh = tuple(r for r in records if id(r) not in memo)
            probe = replace(message, records=fresh) if len(fresh) < len(records) else message
            decoded = from_wire(decode_body(frame[4:] if probe is message else encode_frame(to_wire(probe))[4:]))
        except (DecodeError, FrameError) as exc:
            self.codec_errors.append(f"{self.now:.3f} {node.id} {message.TYPE}: {exc}"[:300])
            return None
        for original, copy in zip(fresh, decoded.records):
            memo[id(original)] = (original, copy)  # the original kept alive: its id stays its own
        return replace(decoded, records=tuple(memo[id(r)][1] for r in records))

    def _do_set_timer(self, node: SimNode, command: SetTimer) -> None:
        node.timers[command.name] = command.at_s
        self._schedule(max(self.now, node.clock.world(command.at_s)), self._timer,
                       (node, node.incarnation, command.name, command.at_s))

    def _do_reply(self, node: SimNode, command: Reply) -> None:
        self._observe_ack(node, command.body)
        callback = self.client_waiting.pop((node.id, command.request_id), None)
        if callback is not None:
            callback(command.body)

    def _do_push(self, node: SimNode, command: Push) -> None:
        callback = self.client_waiting.get((node.id, command.request_id))
        if callback is not None:
            callback(command.body)

    def _observe_ack(self, node: SimNode, body: dict) -> None:
        """The leader's own acknowledgment of a submit (not a relay of it by another node)."""
        if acknowledged_ids(body) and body.get("leader") == node.id:
            self.history.ack_issued(self.now, node.id, body.get("term", ""))

    def _do_run_task(self, node: SimNode, command: RunTask) -> None:
        """Start the task in a free slot, or queue it for one (the most urgent first, as Executor does)."""
        if len(node.running) < max(1, self.config.slots):
            self._start_run(node, command)
        else:
            self._seq += 1
            heappush(node.waiting, (command.spec.priority, self._seq, command))

    def _start_run(self, node: SimNode, command: RunTask) -> None:
        node.running.add(command.attempt_id)
        spec = command.spec
        duration = float(spec.args[0]) if spec.target == "sleep" and spec.args else self.task_duration_s
        record = node.core.executing.get(command.attempt_id)
        attempt = record.attempt(command.attempt_id) if record else None
        # In true time: when the wire carried the dispatch, else (a leader running its own
        # task) its stamp read back through its clock.
        seen = self.history.first_dispatch.get(command.task_id)
        if seen is not None and seen[1] == command.attempt_id:
            dispatched_at = seen[0]
        else:
            dispatched_at = node.clock.world(attempt.started_at) if attempt else self.now
        self.history.execution_start(command.task_id, command.attempt_id, node.id, self.now, dispatched_at)
        self._schedule(self.now + duration, self._task_done,
                       (node, node.incarnation, command.task_id, command.attempt_id))

    def _task_done(self, node: SimNode, incarnation: int, task_id: str, attempt_id: str) -> None:
        # A worker process dies with its node; a cancelled one has already ended.
        if node.alive and node.incarnation == incarnation and not self.history.execution_ended(attempt_id):
            self.history.execution_end(attempt_id, self.now, SUCCEEDED)
            self._free_slot(node, attempt_id)
            self._feed(node, TaskCompleted(task_id, attempt_id, SUCCEEDED, {"value": None}, node.clock.local(self.now)))

    def _free_slot(self, node: SimNode, attempt_id: str) -> None:
        node.running.discard(attempt_id)
        if node.waiting and len(node.running) < max(1, self.config.slots):
            self._start_run(node, heapq.heappop(node.waiting)[2])

    def _do_stop_task(self, node: SimNode, command: StopTask) -> None:
        queued = next((w for w in node.waiting if w[2].attempt_id == command.attempt_id), None)
        if queued is not None:
            node.waiting.remove(queued)  # never started: nothing ran
            heapq.heapify(node.waiting)
        else:
            self.history.execution_end(command.attempt_id, self.now, CANCELLED)
            self._free_slot(node, command.attempt_id)
        event = TaskCompleted(command.task_id, command.attempt_id, CANCELLED, None, node.clock.local(self.now))
        self._schedule(self.now, self._feed_if, (node, node.incarnation, event, "TaskCompleted"))

    def _do_persist_term(self, node: SimNode, command: PersistTerm) -> None:
        node.disk_term = command.term  # the core persists the highest term seen, as it grows

    def _do_forget_records(self, node: SimNode, command: ForgetRecords) -> None:
        for task_id in command.task_ids:
            node.disk_records.pop(task_id, None)
            node.disk_forgotten[task_id] = None

    def _do_forget_peer(self, node: SimNode, command: ForgetPeer) -> None:
        # The simulated network keeps no per-peer queues or redials: only the fact is kept.
        self.peers_forgotten.append((self.now, node.id, command.node))

    def _do_persist_records(self, node: SimNode, command: PersistRecords) -> None:
        disk = node.disk_records
        for record in command.records:
            disk[record.task_id] = record

    def _do_note(self, node: SimNode, command: Note) -> None:
        self.history.note(self.now, node.id, command.kind, command.detail)

    # -- clients and observers ---------------------------------------------------------------
    def request(self, via: str, request: Any, on_reply: Callable[[dict], None]) -> bool:
        """A client asks node `via`; False if that node is down (connection refused)."""
        if self.codec:
            return self.request_wire(via, to_wire(request), on_reply)
        return self._request(via, request, on_reply)

    def request_wire(self, via: str, wire: dict, on_reply: Callable[[dict], None]) -> bool:
        """A client sends node `via` a raw request map, checked at the edge as a real node checks it."""
        if not self.nodes[via].alive:
            return False
        try:
            frame = encode_frame(wire)
        except (OverflowError, TypeError, ValueError) as exc:  # msgpack cannot carry it: never sent
            on_reply(error(ErrorCode.INVALID, f"cannot be encoded: {exc}"))
            return True
        try:
            request = decode_client_request(decode_body(frame[4:]))
        except (DecodeError, FrameError) as exc:
            on_reply(error(ErrorCode.INVALID, str(exc)))
            return True
        return self._request(via, request, on_reply)

    def _request(self, via: str, request: Any, on_reply: Callable[[dict], None]) -> bool:
        node = self.nodes[via]
        if not node.alive:
            return False
        self._request_ids += 1
        rid = self._request_ids
        self.client_waiting[(via, rid)] = on_reply
        self._feed(node, ClientRequested(rid, request))
        return True

    def leaders(self) -> list[str]:
        """Nodes that hold the LEADER role now (a paused one still believes it leads)."""
        return [i for i, n in self.nodes.items() if n.alive and n.core.role is _LEADER]

    # -- as a fault target (p2pq/faults.py: FaultTarget) ---------------------------------------
    def leader(self) -> str | None:
        """The leader most nodes follow (ties: the newest term).

        Not simply the newest term: in available mode a node cut off alone
        elects itself, and striking that one would miss the leader that serves.
        """
        leaders = self.leaders()
        if not leaders:
            return None
        terms = [n.core.term for n in self.nodes.values() if n.alive]

        def weight(node: str) -> tuple:
            term = self.nodes[node].core.term
            return terms.count(term), term
        return max(leaders, key=weight)

    def follower(self) -> str | None:
        """The first follower of the current leader (it holds the copy, G1)."""
        leader = self.leader()
        followers = list(self.nodes[leader].core.followers) if leader else []
        return followers[0] if followers else None

    def highest(self) -> str:
        """The bully winner: the node of highest rank."""
        return max(self.ids, key=lambda n: (self.nodes[n].priority, n))

    def running(self, node_id: str) -> bool:
        node = self.nodes[node_id]
        return node.alive and not node.paused

    def is_up(self, node_id: str) -> bool:
        return self.nodes[node_id].alive

    def opened(self, kind: str, detail: str = "") -> Callable[[], None]:
        """A fault window in the history (a shaded band of the timeline); the result closes it."""
        window = self.history.open_window(self.now, kind, detail)

        def close() -> None:
            if window.end_s is None:
                window.end_s = self.now
        return close

    def lost_leader(self, leader: str) -> None:
        self.history.leader_losses.append((self.now, leader, str(self.nodes[leader].core.term)))

    def bring_back(self, node_id: str, keep_disk: bool = True) -> None:
        """A crashed node restarts when its fault ends (unless this run keeps crashed nodes down)."""
        if not self.keep_crashed_down:
            self.restart(node_id, keep_disk)

    def finish(self) -> None:
        """Close the books at the end of a run: open leaderships and fault windows end now."""
        for node in self.nodes.values():
            if node.leadership is not None:
                node.leadership.end_s = self.now
        self.history.close_windows(self.now)
