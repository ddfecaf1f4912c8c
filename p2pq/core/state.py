"""What one node knows, and the few primitives every rule uses to act on it.

``NodeState`` is the node's memory (peers, the task table, terms, its role,
its leadership while it has one) and its output for the current step. The
rules are functions of it in their own modules (``election.py``,
``replication.py``, ``scheduler.py``, ``compaction.py``, ``clients.py``);
``node.py`` is the entry point that routes each event to them. This module
imports none of them, so the core has no import cycle: a rule calls down,
into this module or a rule module below its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .events import Command, PersistTerm, Push, Reply, Send
from .leader import FollowerProgress, Leadership
from .messages import ForwardPush, ForwardReply
from . import dependencies
from .tasks import Attempt, TaskRecord, TaskState, TaskTable, approx_bytes, describe, describe_end
from .types import TRANSITIONS, ZERO_TERM, Config, IllegalTransition, NodeId, Rank, Role, Term, Trigger

if TYPE_CHECKING:
    import random

# Records of snapshot and offer parts sent per tick (at least one part): about
# 30 ms of encoding for the sender and 70 ms of decoding and merging for the
# receiver, so a big table never holds the heartbeats up (10,000 records/s).
BULK_RECORDS = 2048
BULK_BYTES = 4 * 1024 * 1024  # records' estimated size: big arguments go 20 MB/s
WATCH_PUSH_BYTES = 256 * 1024  # task views in one push of a watch, about (a result may be 1 MiB)


def push_parts(views: list[dict]) -> Iterator[list[dict]]:
    """`views` cut in parts of about WATCH_PUSH_BYTES (at least one view each): a frame holds 16 MiB."""
    part: list[dict] = []
    size = 0
    for view in views:
        if part and size > WATCH_PUSH_BYTES:
            yield part
            part, size = [], 0
        part.append(view)
        size += 64 + approx_bytes(view.get("result"))
    if part:
        yield part


@dataclass(slots=True)
class Peer:
    node: NodeId
    priority: int
    address: tuple | None = None
    slots: int = 1
    last_heard: float = float("-inf")
    refused_at: float = float("-inf")  # when a dial to it was last refused (PeerRefused)
    alive: bool = True

    @property
    def rank(self) -> Rank:
        return Rank(self.priority, self.node)


class NodeState:
    """One node's state; the rules read and change it, and append what it must do to `out`."""

    def __init__(self, node_id: NodeId, priority: int, config: Config, rng: "random.Random", *,
                 address: tuple | None = None, restored_term: Term = ZERO_TERM,
                 restored_records: Iterable[TaskRecord] = (),
                 restored_forgotten: Iterable[str] = ()) -> None:
        self.id, self.priority, self.config, self.rng = node_id, priority, config, rng
        self.address = address
        self.now = float("-inf")  # the first event sets it (a clock may read below zero: the simulator)
        self.peers: dict[NodeId, Peer] = {}
        self.dead_since: dict[NodeId, float] = {}  # peers seen dead at a tick, and since when
        self.table = TaskTable()
        self.forgotten: dict[str, float] = dict.fromkeys(restored_forgotten, 0.0)
        self.next_prune_at = 0.0
        for record in restored_records:
            if record.task_id not in self.forgotten:
                self.table.merge(record)
        # election
        self.role = Role.MEMBER
        self.term = ZERO_TERM        # the term of the leader we obey (or our own)
        self.max_term = restored_term  # the highest term ever seen; the next one is above it
        self.leader: NodeId | None = None
        self.leader_heard_at = 0.0
        self.election_deadline = 0.0
        self.answered_by: NodeId | None = None  # the highest node that answered our election
        self.lead: Leadership | None = None  # while gathering and leading (leader.py)
        self.stopping = False
        # replication, follower side
        self.caught_up = False
        self.applied_index = -1
        self.snapshot_parts: tuple | None = None  # ((term, index), next part) of a snapshot coming in
        self.offer_sent_at = float("-inf")         # when it last sent its state offer,
        self.offer_sent_parts = 0                  # and in how many parts
        self.leader_digests: tuple[Term, bytes] | None = None  # its leader's table digests
        self.offer_ids: set[int] = set()           # the offers it sent since it started
        self.followed_by: tuple[NodeId, ...] = ()
        # execution
        self.executing: dict[str, TaskRecord] = {}
        self.unacked: dict[str, tuple[TaskRecord, float]] = {}
        self.attempt_counter = 0
        self.submit_counter = 0
        self.retry_at: float | None = None
        # clients
        self.forwarded: dict[int, NodeId] = {}  # request id -> the node it went to
        self.relays: dict[int, tuple[NodeId, int]] = {}  # our relay id -> (origin, its request id)
        self.relay_counter = 0  # relay ids count down from -1: the drivers' ids are >= 0
        # many-part messages (snapshots, offers) still to send, a few records' worth per step
        self.bulk: dict[tuple[NodeId, str], Iterator] = {}
        # output of the current step
        self.out: list[Command] = []
        self.persist: list[Command] = []
        self.dirty: dict[str, TaskRecord] = {}
        self.ended_views: dict[tuple[NodeId, int], list[dict]] = {}  # watched tasks ended this step
        self._deciding: list[str] = []  # blocked tasks, and ended tasks with dependents, to decide (leader)
        self._in_decide = False

    @property
    def rank(self) -> Rank:
        return Rank(self.priority, self.id)

    # -- roles and terms ---------------------------------------------------------------
    def become(self, role: Role, trigger: Trigger) -> None:
        """Change role; a move the rules never make is a bug and raises."""
        if trigger not in TRANSITIONS.get((self.role, role), ()):
            raise IllegalTransition(f"invalid transition [{self.role.value} -> {role.value}] "
                                    f"on {trigger.value}")
        self.role = role

    def see_term(self, term: Term) -> None:
        """Terms only grow (G3): the highest term seen is persisted as it grows, so a
        restarted node numbers its next term above every term it ever saw."""
        if term > self.max_term:
            self.max_term = term
            self.persist.append(PersistTerm(term))

    def adopt_term(self, term: Term) -> None:
        """Accept `term`; it is persisted (as the highest seen) before anything is said under it."""
        self.term = term
        self.see_term(term)

    # -- the table ------------------------------------------------------------------------
    def merge(self, record: TaskRecord) -> TaskRecord | None:
        """Join a record into the table; log, persist and notify if it changed."""
        if record.task_id in self.forgotten:
            return None  # pruned: a stale copy must not bring it back
        new = self.table.merge(record)
        if new is None:
            return None
        self.dirty[new.task_id] = new
        lead = self.lead
        if lead is None:
            return new
        lead.log.append(new.task_id)
        for attempt in new.running_attempts():
            self.note_running(new.task_id, attempt)
        if new.task_id in lead.waiters and new.state.terminal:
            for target in lead.waiters.pop(new.task_id):
                watched = lead.watches.get(target)
                if watched is None:  # a Wait
                    self.reply(target, {"ok": True, "task": describe(new)})
                    continue
                view = describe_end(new)
                watched.discard(new.task_id)
                ended = self.ended_views.setdefault(target, [])
                ended.append(view)
                if not watched:  # the last task the watch waited for: what is held back, the reply last
                    del lead.watches[target]
                    parts = list(push_parts(self.ended_views.pop(target)))
                    for part in parts[:-1]:
                        self.push(target, {"ok": True, "tasks": part})
                    self.reply(target, {"ok": True, "tasks": parts[-1]})
        state = new.state
        if state is TaskState.BLOCKED or (state.terminal and self.table.has_dependents(new.task_id)):
            self._deciding.append(new.task_id)
            self.decide()
        return new

    def decide(self) -> None:
        """Decide the blocked tasks whose dependencies ended (dependencies.py); one pass of a
        worklist, not recursion: a failure decides a whole chain after it."""
        if self._in_decide:
            return  # the pass already running takes what was added
        self._in_decide = True
        try:
            while self._deciding:
                record = self.table.get(self._deciding.pop())
                if record is None:
                    continue
                if record.state is TaskState.BLOCKED:
                    decided = dependencies.verdict(self.table, record, self.id, self.now)
                    if decided is not None:
                        self.merge(decided)
                elif record.state.terminal:
                    self._deciding.extend(self.table.take_dependents(record.task_id))
        finally:
            self._in_decide = False

    def decide_blocked(self) -> None:
        """A new leader decides every blocked task it holds: its predecessor may not have."""
        self._deciding.extend(self.table.blocked())
        self.decide()

    def note_running(self, task_id: str, attempt: Attempt) -> None:
        """Every running attempt a leader learns of is a lease it must watch."""
        if self.lead is not None and attempt.running:
            self.lead.assigned.setdefault(attempt.node, {}).setdefault(attempt.attempt_id, (task_id, self.now))

    def busy(self) -> tuple[str, ...]:
        """The attempts this node runs, or ran and has not had acknowledged."""
        return tuple(self.executing) + tuple(self.unacked)

    # -- saying things --------------------------------------------------------------------
    def send(self, to: NodeId, message: Any) -> None:
        self.out.append(Send(to, message))

    def reply(self, target: tuple[NodeId, int], body: dict, final: bool = True) -> None:
        """Answer a client: ours directly, another node's through that node. A part of an
        answer with more to come (a watch's, `final` False) leaves the request open."""
        origin, request_id = target
        if origin == self.id:
            self.out.append(Reply(request_id, body) if final else Push(request_id, body))
        else:
            self.send(origin, ForwardReply(request_id, body) if final else ForwardPush(request_id, body))

    def push_ended(self) -> None:
        """Push the views of the tasks that ended in this step, one push per watch (the end of
        a step, and before a step down): a step that ends many tasks sends one frame, not many."""
        views, self.ended_views = self.ended_views, {}
        for target, ended in views.items():
            for part in push_parts(ended):
                self.push(target, {"ok": True, "tasks": part})

    def push(self, target: tuple[NodeId, int], body: dict) -> None:
        """Tell a client part of an answer that has more to come (a watch)."""
        self.reply(target, body, final=False)

    def send_parts(self, to: NodeId, kind: str, parts: Iterator) -> None:
        """Send the parts of a snapshot or an offer: the first now, the rest at the next ticks.

        Each step sends at most `BULK_RECORDS` records and `BULK_BYTES` (at
        least one part), now and then at every tick, and parts are cut only
        as they go. All at once, a big table held its sender's loop for
        seconds (measuring and encoding 100,000 records) and queued megabytes
        ahead of the heartbeats on the same connection while the receiver
        decoded them. A newer send of the same kind to the same node replaces
        what is left of the older one (a receiver takes a partial one as
        lost and is sent or asked again).
        """
        self.bulk[(to, kind)] = parts
        self.send_bulk()

    def drop_bulk(self, kind: str) -> None:
        for key in [key for key in self.bulk if key[1] == kind]:
            del self.bulk[key]

    def send_bulk(self) -> None:
        records, size = BULK_RECORDS, BULK_BYTES
        for key in list(self.bulk):
            parts = self.bulk[key]
            while records > 0 and size > 0:
                message = next(parts, None)
                if message is None:
                    del self.bulk[key]
                    break
                self.send(key[0], message)
                records -= max(1, len(message.records))
                size -= sum(r.approx_bytes for r in message.records)
                if message.part == message.parts - 1:
                    del self.bulk[key]
                    break

    # -- what we know of the others -------------------------------------------------------------
    def leader_alive(self) -> bool:
        return self.leader is not None and not self.leader_silent()

    def leader_silent(self) -> bool:
        """No word from a leader for a failure timeout (a new node waits that long too)."""
        leader = self.peers.get(self.leader) if self.leader is not None else None
        refused = leader is not None and leader.refused_at >= self.leader_heard_at
        limit = self.config.refused_timeout_s if refused else self.config.failure_timeout_s
        return self.now - self.leader_heard_at > limit

    def peer_silent(self, peer: Peer) -> bool:
        """A leader's view of a member: silent for a failure timeout (less if it refused us)."""
        refused = peer.refused_at >= peer.last_heard
        limit = self.config.refused_timeout_s if refused else self.config.failure_timeout_s
        return self.now - peer.last_heard > limit

    def is_live_peer(self, node: NodeId) -> bool:
        peer = self.peers.get(node)
        return peer is not None and peer.alive

    def has_quorum(self) -> bool:
        live = 1 + sum(1 for p in self.peers.values() if p.alive)
        return live >= self.config.majority

    def may_ack_unreplicated(self) -> bool:
        return self.config.replicas == 0 or not self.peers

    # -- read-only views for drivers, clients and the dashboard ------------------------------------
    @property
    def followers(self) -> dict[NodeId, FollowerProgress]:
        """The nodes that hold this leader's copy, and how far each is (none while not leading)."""
        return self.lead.followers if self.lead is not None else {}

    @property
    def commit(self) -> int:
        return self.lead.commit if self.lead is not None else 0

    @property
    def last_index(self) -> int:
        return self.lead.last_index if self.lead is not None else 0

    def stats(self) -> dict:
        return {"node": self.id, "role": self.role.value, "term": str(self.term),
                "leader": self.leader, "counts": {s.value: n for s, n in self.table.counts.items()},
                "tasks": len(self.table), "commit": self.commit, "last_index": self.last_index}

    def view(self) -> dict:
        """This node's picture of the cluster (for `p2pq peers` and the dashboard)."""
        followers = tuple(self.followers) if self.role is Role.LEADER else self.followed_by
        members = [{"node": self.id, "priority": self.priority, "alive": True, "self": True,
                    "slots": self.config.slots, "address": self.address}]
        members += [{"node": p.node, "priority": p.priority, "alive": p.alive, "self": False,
                     "slots": p.slots, "address": p.address} for p in self.peers.values()]
        for m in members:
            m["role"] = ("leader" if m["node"] == self.leader else
                         "follower" if m["node"] in followers else "member")
            m["running"] = self.lead.holding(m["node"]) if self.role is Role.LEADER else None
        return {"node": self.id, "role": self.role.value, "term": str(self.term),
                "leader": self.leader, "followers": list(followers), "members": members}
