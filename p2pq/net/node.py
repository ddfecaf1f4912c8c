"""The driver: one real p2pq node around the pure NodeCore.

It turns the world into events (frames from peers and clients, timers,
discovery, finished tasks), hands them to the core in batches, and carries
out the commands it returns (sends, timers, replies, task runs, persistence,
notes). All protocol decisions are the core's; this module only does I/O.

Time: the core's ``now`` comes from a ProtocolClock (clock.py): wall-clock
seconds at start that then advance with the monotonic clock, so task
timestamps mean something to people while no step of the wall clock (NTP)
moves a heartbeat, a failure timeout or a lease. Timers are armed on the
loop's monotonic clock for the remaining delay. Notes people read carry the
wall clock.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import random
import re
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pq import PROTOCOL_VERSION
from p2pq.core.errors import ErrorCode, error
from p2pq.core.events import (ACTIONS, ClientRequested, ForgetPeer, MessageReceived, Note, PeerDiscovered,
                              PeerRefused, Push, Reply, RunTask, Send, SetTimer, ShutdownRequested, Started, StopTask,
                              TaskCompleted, TimerFired, bind_commands, carry_out)
from p2pq.core.messages import DecodeError, Submit, decode_client_request, from_wire, to_wire
from p2pq.core.node import NodeCore
from p2pq.core.tasks import TaskSpec
from p2pq.core.types import Config, InvariantViolation
from p2pq.net.framing import FrameError

from p2pq.worker.outcome import Outcome

from .clock import ProtocolClock
from .pki import ca_fingerprint, ensure_identity
from .storage import EncodingBug, Restored, Store, batch_of, open_store
from .transport import ClientConnection, Transport

log = logging.getLogger("p2pq.node")
DEFAULT_PORT = 7470
LINGER_S = 0.001           # how long a step waits for more events under load
LINGER_ABOVE_EVENTS = 3.0  # "under load": steps take more events than this on average
MAX_REQ_CHARS = 64         # a client's request tag, echoed in the reply


@dataclass(slots=True)
class NodeSettings:
    """Everything `p2pq node` can be told; see `p2pq node --help`."""

    cluster_dir: Path
    data_dir: Path | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    advertise_host: str | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    mdns: bool = True
    mdns_interfaces: list[str] | None = None
    priority: int | None = None  # None: the one the journal holds, else 0
    node_id: str | None = None
    config: Config = field(default_factory=Config)
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    durability: str = "written"  # memory | written | fsync: docs/durability.md
    task_memory_bytes: int | None | str = "auto"  # "auto": a share of RAM per slot; None: no limit
    python_path: list[str] = field(default_factory=list)  # where Python tasks import from, first


def host_name() -> str:
    """This machine's short host name, as a node id may hold it."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]) or "node"
    return name[:100]


def default_node_id(port: int) -> str:
    """HOSTNAME-PORT-xxxxxx: unique with no configuration, even on machines cloned from one image.

    Made once, when a node first starts; its journal keeps it from then on.
    """
    return f"{host_name()}-{port}-{secrets.token_hex(3)}"


def default_data_dir(name: str) -> Path:
    """~/.local/share/p2pq/NAME: HOSTNAME-PORT by default, so each machine of a shared home has its own."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "p2pq" / name


def outward_address() -> str:
    """The address other machines reach us at (no packet is sent to find it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("224.0.0.251", 5353))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def spec_to_executor(spec: TaskSpec) -> dict:
    """The executor's view of a task spec (kind-specific options flattened in)."""
    return {"kind": spec.kind, "target": spec.target, "args": list(spec.args), **spec.options}


class NodeFailed(Exception):
    """Why a node stopped by itself (the journal failed, a bug, its id is taken): one line."""


STEP_RECORDS = 4096  # records (in appends and offers) one step takes at most: the loop breathes between


def next_step(events: list, hold_timers: bool = False) -> tuple[list, list]:
    """Split queued events into this step's and the rest.

    Record-bearing messages (appends, offers) are taken in arrival order
    until STEP_RECORDS records; the rest of them waits for the next step,
    after the loop has had a turn for timers and reads. Every other event
    (timers, heartbeats, elections, acks, client requests) is taken now,
    in arrival order with the taken ones: a heartbeat or an ANSWER must not
    wait behind a big table. Timers come last: a node that was busy must
    first hear the heartbeats that queued meanwhile, or its failure timer
    would find the leader silent when it is not. A single message bigger
    than the budget still goes alone. With `hold_timers` the timers wait in
    the rest, in order (the pump holds them briefly after a stall).
    """
    step: list = []
    timers: list = []
    rest: list = []
    records = 0
    for event in events:
        if type(event) is TimerFired:
            timers.append(event)
            continue
        size = len(getattr(event.message, "records", ())) if type(event) is MessageReceived else 0
        if size and (rest or (records and records + size > STEP_RECORDS)):
            rest.append(event)  # once one waits, the later big ones wait too: they stay in order
            continue
        records += size
        step.append(event)
    if hold_timers:
        return step, rest + timers
    return step + timers, rest


def describe_events(events: list) -> str:
    """'3 state_offer (3,072 records), 1 TimerFired': what a step handled, for a log line."""
    counts: dict[str, list[int]] = {}
    for event in events:
        kind = event.message.TYPE if type(event) is MessageReceived else type(event).__name__
        entry = counts.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += len(getattr(event.message, "records", ())) if type(event) is MessageReceived else 0
    return ", ".join(f"{n} {kind}" + (f" ({records:,} records)" if records else "")
                     for kind, (n, records) in counts.items())


class StepLoad:
    """Whether steps come under load: a moving average of the events each one takes."""

    def __init__(self) -> None:
        self.per_step = 1.0

    def took(self, events: int) -> None:
        self.per_step += 0.1 * (events - self.per_step)

    @property
    def busy(self) -> bool:
        return self.per_step > LINGER_ABOVE_EVENTS


class Lateness:
    """How late the heartbeat tick reached the core, over the last minute: the
    protocol's timing as the loop keeps it (a busy loop, an HTTP flood, a stall
    all show here first)."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)

    def add(self, at_s: float, late_s: float) -> None:
        """A tick `late_s` late, seen at `at_s` (time.monotonic())."""
        self.samples.append((at_s, max(0.0, late_s)))

    def quantiles(self, now_s: float) -> dict[str, float]:
        """{"0.5": .., "0.99": .., "1": ..} seconds over the window; {} without samples."""
        late = sorted(x for at, x in self.samples if now_s - at <= self.WINDOW_S)
        if not late:
            return {}
        pick = lambda q: late[min(len(late) - 1, int(q * len(late)))]  # noqa: E731
        return {"0.5": pick(0.5), "0.99": pick(0.99), "1": late[-1]}


class NodeRuntime:
    """A running node: transport, discovery, executor, storage, and the core."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id or default_node_id(settings.port)  # the journal's id wins, at start
        self.data_dir = settings.data_dir or default_data_dir(settings.node_id or f"{host_name()}-{settings.port}")
        self.advertise = settings.advertise_host or (
            outward_address() if settings.host in ("0.0.0.0", "::", "") else settings.host)
        self.notes: collections.deque[dict] = collections.deque(maxlen=1000)
        self.started_at = time.time()
        self.clock = ProtocolClock()
        self.core: NodeCore | None = None
        self.transport: Transport | None = None
        self.store: Store | None = None
        self.failure: NodeFailed | None = None  # set when the node must stop (journal, bug, duplicate id)
        self.on_fatal = None  # called (no arguments) after `failure` is set
        self._events: list[Any] = []
        self._outbox: asyncio.Queue = asyncio.Queue()  # (journal write, actions) per step, in order
        self._wake = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._do = bind_commands(self, ACTIONS)  # the durable commands go to the journal (batch_of)
        self._tick_due: float | None = None  # loop time the armed tick is due
        self.tick_lateness = Lateness()
        self._clients: dict[int, tuple[ClientConnection | asyncio.Future, Any]] = {}
        self._next_request = 0
        self._owned: set[asyncio.Task] = set()
        self._addressed: set[str] = set()
        self.executor = None
        self.discovery = None
        self.http = None
        self.listeners: list = []  # callbacks(note) for live views

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.data_dir, s.durability)
        restored = self.store.load()
        self._settle_identity(restored)
        identity = ensure_identity(s.cluster_dir, self.data_dir / "identity", self.node_id, "node")
        self.fingerprint = ca_fingerprint(s.cluster_dir)
        self.core = NodeCore(self.node_id, s.priority, s.config, random.Random(),
                             address=(self.advertise, s.port), restored_term=restored.term,
                             restored_records=restored.records,
                             restored_forgotten=restored.forgotten)
        if self.store.corruption:
            self._note("journal_corrupted", {"message": self.store.corruption})
        if s.config.slots > 0:  # --slots 0: a coordinator that leads and holds copies, runs nothing
            from p2pq.worker import Executor
            from p2pq.worker.confine import default_task_memory_bytes
            memory = s.task_memory_bytes
            if memory == "auto":
                memory = default_task_memory_bytes(s.config.slots)
            self.executor = Executor(s.config.slots, task_memory_bytes=memory, python_path=tuple(s.python_path))
            await self.executor.start()
        self.transport = Transport(
            node_id=self.node_id, identity=identity, host=s.host, port=s.port,
            hello_extra={"priority": s.priority, "listen": [self.advertise, s.port],
                         "slots": s.config.slots, "fp": self.fingerprint},
            on_peer_message=self._on_peer_message, on_peer_hello=self._on_peer_hello,
            on_client_message=self._on_client_message, on_duplicate_id=self._stop_for,
            on_peer_refused=lambda peer_id: self._post(PeerRefused(peer_id)),
            protocol_version=PROTOCOL_VERSION)
        await self.transport.start()
        self._spawn(self._pump(), "pump")
        self._spawn(self._release(), "release")
        self._post(Started())
        for host, port in s.peers:
            self.transport.dial_seed(host, port)
        if s.mdns:
            await self._start_discovery()
        if s.http_port is not None:
            from p2pq.web.server import start_http
            self.http = await start_http(self, s.http_host, s.http_port)
        log.info("node %s up on %s:%d (priority %d, %d slots)", self.node_id, self.advertise,
                 s.port, s.priority, s.config.slots)

    def _settle_identity(self, restored: Restored) -> None:
        """Flags win; without them a restarted node keeps the id and priority its journal holds."""
        s = self.settings
        if s.node_id is None and restored.node_id:
            self.node_id = restored.node_id
        if s.priority is None:
            s.priority = restored.priority if restored.priority is not None else 0
        stored = (restored.node_id, restored.priority)
        if stored == (self.node_id, s.priority):
            return
        if restored.node_id is not None:
            log.warning("the flags change this node's identity from %s (priority %s) to %s (priority %d);"
                        " the journal now keeps the new one", *stored, self.node_id, s.priority)
        self.store.save_identity(self.node_id, s.priority)

    async def _start_discovery(self) -> None:
        from .discovery import Discovery
        s = self.settings
        self.discovery = Discovery(node_id=self.node_id, port=s.port, priority=s.priority,
                                   fingerprint=self.fingerprint, version=PROTOCOL_VERSION,
                                   on_peer=self._on_discovered, advertise_host=self.advertise,
                                   **({"interfaces": s.mdns_interfaces} if s.mdns_interfaces else {}))
        try:
            await self.discovery.start()
        except OSError as exc:  # no multicast here: seeds and gossip still work
            log.warning("mDNS discovery unavailable (%s); relying on --peer seeds and gossip", exc)
            self.discovery = None

    async def leave(self, timeout_s: float = 1.0) -> None:
        """Say goodbye (so failover does not wait for a timeout), then stop."""
        if self.core is not None and self.transport is not None:
            self._post(ShutdownRequested())
            deadline = time.monotonic() + timeout_s
            await asyncio.sleep(0)
            while time.monotonic() < deadline and any(
                    self.transport.queued_frames(p) for p in self.core.peers):
                await asyncio.sleep(0.01)
        await self.close()

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        for task in list(self._owned):
            task.cancel()
        await asyncio.gather(*self._owned, return_exceptions=True)
        for part in (self.http, self.discovery, self.transport, self.executor):
            if part is not None:
                await part.close()
        if self.store is not None:
            self.store.close()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    # -- events in ------------------------------------------------------------------
    def _post(self, event: Any) -> None:
        self._events.append(event)
        self._wake.set()

    async def _pump(self) -> None:
        """Feed the core the events that arrived since the last turn, in one batch (next_step: at
        most about STEP_RECORDS records; a backlog of big messages goes in several turns).

        The batch's durable state goes to the journal at once. In `memory`
        mode, and in `written` mode where the commit happens right here, the
        other commands are carried out at once too (unless earlier batches
        still wait). In `fsync` mode they wait in the outbox until `_release`
        sees the flush done; the core meanwhile handles the next batch, and if
        the writer is still busy that batch shares the next transaction: group
        commit across batches.

        Under load (steps already take several events on average) a step
        first lingers LINGER_S for more: each step costs a journal commit, a
        core pass and a write per peer whatever its size, so fewer, larger
        steps do the same work for less. One event at a time, as a lone
        client's submits arrive, never waits.
        """
        load = StepLoad()
        carried_over = False
        loop = asyncio.get_running_loop()
        stall_s = self.settings.config.heartbeat_interval_s
        held_until = float("-inf")  # timers wait until then (after a stall)
        while self.failure is None:
            await self._wake.wait()
            if carried_over:
                await asyncio.sleep(0)  # timers and reads get a turn between two parts of a backlog
            if load.busy:
                await asyncio.sleep(LINGER_S)
            self._wake.clear()
            hold = loop.time() < held_until
            events, self._events = next_step(self._events, hold_timers=hold)
            carried_over = bool(self._events) and not (hold and all(type(e) is TimerFired for e in self._events))
            if carried_over:
                self._wake.set()
            if not events:
                continue
            load.took(len(events))
            started_s = loop.time()
            if self._tick_due is not None and TimerFired("tick") in events:
                self.tick_lateness.add(time.monotonic(), started_s - self._tick_due)
                self._tick_due = None
            try:
                step = self.core.handle_batch(events, self.clock.now())
            except InvariantViolation as exc:  # the protocol broke its own rules: stop, say why
                self._stop_for(f"protocol invariant violated: {exc}; this node stops (a bug: please "
                               "report it with this log)")
                return
            except Exception:  # the core isolates events; this is a last safety net
                log.exception("error while handling %d event(s)", len(events))
                continue
            written = self.store.write(batch_of(step.durable)) if step.durable else None
            if not self._outbox.empty() or (self.store.waits and written is not None and not written.done()):
                self._outbox.put_nowait((written, step.actions))
            elif self.store.waits and written is not None and written.exception() is not None:
                self._journal_failed(written.exception())
            else:
                self._carry_out(step.actions)
            took_s = loop.time() - started_s
            if took_s > stall_s:
                log.info("a step took %.2f s (%s)", took_s, describe_events(events))
            if took_s > stall_s and not hold:
                # The loop stood still: what peers sent meanwhile waits in the
                # sockets, unread. Timers wait a heartbeat while the readers catch
                # up, or a failure timer would find a live leader silent. Once per
                # stall: timers are never held twice in a row.
                held_until = loop.time() + stall_s
                loop.call_at(held_until, self._wake.set)

    async def _release(self) -> None:
        """Carry out each step's actions, in order, once its journal write is durable.

        In `written` and `fsync` modes nothing of a batch (no Send, no Reply)
        leaves before its commit (G1); in `memory` mode nothing waits.
        """
        while True:
            written, actions = await self._outbox.get()
            if written is not None and (self.store.waits or written.done()):
                try:  # shielded: a cancelled wait must not cancel the write
                    await asyncio.shield(asyncio.wrap_future(written))
                except Exception as exc:  # noqa: BLE001 -- any write failure stops the node
                    self._journal_failed(exc)
                    return
            self._carry_out(actions)

    def _journal_failed(self, exc: BaseException) -> None:
        if isinstance(exc, EncodingBug):
            self._stop_for(f"{exc}: this node stops (a bug in input validation: please report it)")
        else:
            self._stop_for(f"cannot write the journal {self.store.path} ({exc}): this node "
                           "stops rather than acknowledge what it cannot keep")

    def _stop_for(self, reason: str) -> None:
        """A fault the node must not survive: one clear line, then stop as a crash would."""
        self.failure = NodeFailed(reason)
        log.critical("%s", reason)
        if self.on_fatal is not None:
            self.on_fatal()

    def _on_peer_message(self, peer_id: str, wire: dict) -> None:
        try:
            message = from_wire(wire)
        except Exception as exc:  # DecodeError; anything else is a decoder bug, refused the same way
            log.warning("dropped a message from %s: %s", peer_id, _one_line(exc))
            return
        self._post(MessageReceived(peer_id, message))

    def _on_peer_hello(self, peer_id: str, hello: dict) -> None:
        """A peer's hello names its rank and address; checked like any message (G5)."""
        from p2pq.core import schema
        try:
            schema.ident(peer_id, "node id")
            priority = schema.integer(hello.get("priority", 0), "priority")
            listen = hello.get("listen")
            address = None
            if isinstance(listen, (list, tuple)) and len(listen) == 2:
                address = (schema.text(listen[0], "host", schema.MAX_HOST_CHARS),
                           schema.integer(listen[1], "port", 1, 65535))
        except DecodeError as exc:
            log.warning("ignored the hello of %s: %s", peer_id, exc)
            return
        if address is not None:
            self.transport.set_address(peer_id, *address)
            self._addressed.add(peer_id)
        self._post(PeerDiscovered(peer_id, priority, address))

    def _on_discovered(self, peer) -> None:
        self.transport.set_address(peer.node_id, peer.host, peer.port)
        self._addressed.add(peer.node_id)
        self._post(PeerDiscovered(peer.node_id, peer.priority, (peer.host, peer.port)))

    async def request(self, request: Any) -> dict:
        """Ask the core as a local client would (the HTTP API uses this); returns the reply body.

        The request passes the same checks as one from a client connection.
        """
        try:
            request = decode_client_request(to_wire(request))
        except Exception as exc:
            return error(ErrorCode.INVALID, _one_line(exc))
        refusal = _refusal(request)
        if refusal is not None:
            return error(ErrorCode.INVALID, refusal)
        future = asyncio.get_running_loop().create_future()
        self._next_request += 1
        self._clients[self._next_request] = (future, None)
        self._post(ClientRequested(self._next_request, request))
        return await future

    def _on_client_message(self, conn: ClientConnection, wire: dict) -> None:
        """The edge (G5): a request is checked in full here, and refused in one line, or posted."""
        req = wire.get("req")
        if not (req is None or (type(req) is str and len(req) <= MAX_REQ_CHARS)
                or (type(req) is int and -2**63 <= req < 2**63)):
            req, refusal = None, f"req must be a string of at most {MAX_REQ_CHARS} characters or an integer"
        else:
            try:
                request = decode_client_request(wire)
                refusal = _refusal(request)
            except Exception as exc:  # DecodeError; anything else is a decoder bug, refused the same way
                refusal = _one_line(exc)
        if refusal is not None:
            conn.send({"type": "reply", "req": req, **error(ErrorCode.INVALID, refusal)})
            return
        self._next_request += 1
        self._clients[self._next_request] = (conn, req)
        self._post(ClientRequested(self._next_request, request))

    # -- commands out -------------------------------------------------------------------
    def _carry_out(self, actions: tuple) -> None:
        """Carry out a step's actions; one that fails is logged, the others go on (G5)."""
        carry_out(actions, self._do, on_error=self._action_failed)

    @staticmethod
    def _action_failed(command: Any, exc: Exception) -> None:
        log.error("error while carrying out %s", type(command).__name__, exc_info=exc)

    def _do_send(self, command: Send) -> None:
        self._send(command.to, command.message)

    def _do_set_timer(self, command: SetTimer) -> None:
        self._set_timer(command.name, command.at_s)

    def _do_reply(self, command: Reply) -> None:
        self._answer(command.request_id, command.body)

    def _do_push(self, command: Push) -> None:
        """A part of an answer with more to come: sent, and the request stays open."""
        conn, req = self._clients.get(command.request_id, (None, None))
        if conn is not None and not isinstance(conn, asyncio.Future):
            try:
                conn.send({"type": "push", "req": req, **command.body})
            except FrameError as exc:
                log.error("a push to %s was too large to send: %s", conn, exc)

    def _do_run_task(self, command: RunTask) -> None:
        task_id, attempt_id, spec = command.task_id, command.attempt_id, command.spec
        if self.executor is None:
            self._ran(task_id, attempt_id, Outcome("failed", error="this node runs no tasks (--slots 0)"))
        else:
            self.executor.submit(attempt_id, spec_to_executor(spec), spec.timeout_s,
                                 functools.partial(self._ran, task_id, attempt_id), spec.priority)

    def _do_stop_task(self, command: StopTask) -> None:
        if self.executor is not None:
            self.executor.cancel(command.attempt_id)

    def _do_forget_peer(self, command: ForgetPeer) -> None:
        # Dead for long: stop dialing it and drop its frames. The --peer seeds
        # are dialed again (slowly) whoever they were: a seed that returns with
        # no mDNS and no seeds of its own is found only that way.
        self.transport.forget_peer(command.node)
        self._addressed.discard(command.node)
        for host, port in self.settings.peers:
            self.transport.dial_seed(host, port)

    def _do_note(self, command: Note) -> None:
        self._note(command.kind, command.detail)

    def _answer(self, request_id: int, body: dict) -> None:
        conn, req = self._clients.pop(request_id, (None, None))
        if isinstance(conn, asyncio.Future):
            if not conn.done():
                conn.set_result(body)
        elif conn is not None:
            try:
                conn.send({"type": "reply", "req": req, **body})
            except FrameError as exc:  # a reply over the frame limit: say so instead
                conn.send({"type": "reply", "req": req, **error(
                    ErrorCode.TOO_LARGE, f"the reply is too large to send ({exc}); ask for less "
                    "(a smaller --limit, fewer tasks at once)")})

    def _send(self, to: str, message: Any) -> None:
        if to not in self._addressed:
            peer = self.core.peers.get(to)
            if peer is not None and peer.address:
                self.transport.set_address(to, str(peer.address[0]), int(peer.address[1]))
                self._addressed.add(to)
        self.transport.send(to, to_wire(message))

    def _set_timer(self, name: str, at_s: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        delay = self.clock.delay_until(at_s)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._post, TimerFired(name))
        if name == "tick":
            self._tick_due = loop.time() + delay

    def _ran(self, task_id: str, attempt_id: str, outcome) -> None:
        self._post(TaskCompleted(task_id, attempt_id, outcome.status, outcome.to_wire(), self.clock.now()))

    def _note(self, kind: str, detail: dict) -> None:
        if kind == "internal_error":  # logged once, with its traceback; kept short in the notes
            detail = dict(detail)
            log.error("failed to handle %s: %s\n%s", detail.get("event"), detail.get("error"),
                      detail.pop("traceback", ""))
        note = {"at": time.time(), "node": self.node_id, "kind": kind, **detail}
        self.notes.append(note)
        if kind in ("leader_elected", "stepped_down", "node_dead", "node_forgotten", "leader_accepted"):
            log.info("%s %s", kind, detail)
        for listener in list(self.listeners):
            listener(note)


def _refusal(request: Any) -> str | None:
    """Why a decoded client request cannot be taken, if it cannot: a submit's tasks must be runnable.

    Checked at the node the client asked, against its built-ins (a name
    registered only on some other node is refused here).
    """
    if isinstance(request, Submit):
        from p2pq.worker.spec import SpecError, check_runnable
        for task_id, spec in request.tasks:
            try:
                check_runnable(spec.kind, spec.target, spec.args, spec.options.get("kwargs"))
            except SpecError as exc:
                return f"task {task_id}: {exc}" if len(request.tasks) > 1 else str(exc)
    return None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"malformed request ({type(exc).__name__})"


async def run_node(settings: NodeSettings) -> None:
    """Run a node until SIGINT/SIGTERM, then leave the cluster cleanly."""
    runtime = NodeRuntime(settings)
    await runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.on_fatal = stop.set
    print(f"p2pq node {runtime.node_id} listening on {runtime.advertise}:{settings.port}", flush=True)
    await stop.wait()
    if runtime.failure is not None:  # stop as a crash would, and say why
        await runtime.close()
        raise runtime.failure
    log.info("leaving the cluster")
    await runtime.leave()
