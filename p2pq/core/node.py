"""NodeCore: one p2pq node as a pure state machine.

``handle(event, now) -> [commands]``. No sockets, clocks, files or global
randomness: time arrives as ``now`` and chance from the ``random.Random``
handed in, so the simulator and the runtime drive the very same code and a
seed replays a run exactly. The rules live in ``election.py``,
``replication.py`` and ``scheduler.py``; this module holds the state,
membership and failure detection, and the client-facing requests.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .compaction import CompactionMixin
from .errors import ErrorCode, error, submit_ack
from .election import ElectionMixin
from .events import (ClientRequested, Command, Event, ForgetPeer, MessageReceived, Note, PeerDiscovered,
                     PeerRefused, PersistRecords, Reply, Send, SetTimer, ShutdownRequested, Started,
                     TaskCompleted, TimerFired)
from .messages import (Answer, Append, AppendAck, CancelRun, Coordinator, Dispatch, Election,
                       Finished, FinishedAck, Forward, ForwardReply, Gossip, Heartbeat, HeartbeatAck, Join,
                       Leave, Member, Query, Reject, StateOffer, Submit, Cancel, Wait)
from .leader import FollowerProgress, Leadership, PendingAck
from .replication import ReplicationMixin
from .scheduler import SchedulerMixin
from .tasks import TaskRecord, TaskSpec, TaskState, TaskTable, describe
from .types import (TRANSITIONS, ZERO_TERM, Config, IllegalTransition, InvariantViolation, NodeId, Rank, Trigger,
                    Role, Term)

if TYPE_CHECKING:
    import random

# The term gate (G3): what a message's term means, by message type. Every
# message passes it in `_on_message`, before its handler runs.
#   OBEYED  a leader's message: obeyed only under the term we accepted (_fence:
#           an older term is rejected, a newer one from its owner accepted)
#   RAISES  an election message: its term raises the highest term we have seen
#   ANY     a message whose handler compares the term itself, or that has none
OBEYED, RAISES, ANY = "obeyed", "raises", "any"
TERM_POLICY: dict[type, str] = {
    Heartbeat: OBEYED, Append: OBEYED, Dispatch: OBEYED, CancelRun: OBEYED, FinishedAck: OBEYED,
    Election: RAISES, Answer: RAISES, Coordinator: RAISES, Reject: RAISES,
    HeartbeatAck: ANY, AppendAck: ANY, StateOffer: ANY, Finished: ANY, Join: ANY, Gossip: ANY,
    Leave: ANY, Forward: ANY, ForwardReply: ANY,
}
# Records of snapshot and offer parts sent per tick (at least one part): about
# 30 ms of encoding for the sender and 70 ms of decoding and merging for the
# receiver, so a big table never holds the heartbeats up (10,000 records/s).
BULK_RECORDS = 2048
BULK_BYTES = 4 * 1024 * 1024  # records' estimated size: big arguments go 20 MB/s


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


class NodeCore(ElectionMixin, ReplicationMixin, SchedulerMixin, CompactionMixin):
    """The protocol of one node: feed it events, carry out its commands."""

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
        self.lead: Leadership | None = None  # while gathering and leading (leader.py)
        self.caught_up = False
        self.stopping = False
        # replication, follower side
        self.applied_index = -1
        self.snapshot_parts: tuple | None = None  # follower: ((term, index), next part) of a snapshot
        self.offer_sent_at = float("-inf")         # member: when it last sent its state offer,
        self.offer_sent_parts = 0                  # and in how many parts
        self.leader_digests: tuple[Term, bytes] | None = None  # member: its leader's table digests
        self.offer_ids: set[int] = set()           # member: the offers it sent since it started
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
        self.answered_by: NodeId | None = None  # the highest node that answered our election
        # many-part messages (snapshots, offers) still to send, a few records' worth per step
        self.bulk: dict[tuple[NodeId, str], Iterator] = {}
        # output of the current step
        self.out: list[Command] = []
        self.persist: list[Command] = []
        self.dirty: dict[str, TaskRecord] = {}

    # -- the one entry point ---------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply one event at time `now`; return the commands to carry out, in order."""
        return self.handle_batch((event,), now)

    def handle_batch(self, events: Iterable[Event], now: float) -> list[Command]:
        """Apply several events at once; replication and dispatch run once at the end.

        Each event is handled on its own (G5): an exception while handling
        one is answered ``internal`` (if a client waits on it) and reported
        in an ``internal_error`` note with its traceback, and the other
        events of the step go on. An InvariantViolation (an illegal role
        change, a term going back) is a bug the node must not survive: it
        propagates, and the driver stops the node with one clear line.
        """
        self.now = max(self.now, now)
        terms_before = (self.term, self.max_term)
        for event in events:
            try:
                self._on_event(event)
            except InvariantViolation:
                raise
            except Exception as exc:
                self._event_failed(event, exc)
        if self.role is Role.LEADER:
            try:
                self._dispatch()
                self._replicate()
                self._advance_commit()
            except InvariantViolation:
                raise
            except Exception as exc:
                self._event_failed(None, exc)
        if self.term < terms_before[0] or self.max_term < terms_before[1]:
            raise InvariantViolation(f"terms went back from {terms_before[0]} (seen {terms_before[1]}) "
                                     f"to {self.term} (seen {self.max_term}) (G3)")
        if self.dirty:
            self.persist.append(PersistRecords(tuple(self.dirty.values())))
            self.dirty = {}
        # Durable state first: nothing is said that a crash could take back.
        out = self.persist + self.out
        self.persist, self.out = [], []
        return out

    def _event_failed(self, event: Event | None, exc: Exception) -> None:
        """One event could not be handled: say so, answer whoever waits on it, keep the timers."""
        what = type(event.message).__name__ if isinstance(event, MessageReceived) else type(event).__name__
        self.out.append(Note("internal_error", {
            "node": self.id, "event": what if event is not None else "end of step",
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}))
        body = error(ErrorCode.INTERNAL, f"the node failed to handle this request ({type(exc).__name__}); "
                     "it is logged there")
        match event:
            case ClientRequested(request_id, _):
                self.out.append(Reply(request_id, body))
            case MessageReceived(_, Forward(origin, request_id, _)):
                self._send(origin, ForwardReply(request_id, body))
            case Started():  # a tick re-arms itself before its work (_on_timer)
                self.out.append(SetTimer("tick", self.now + self.config.heartbeat_interval_s))
            case TimerFired(name) if name != "tick":  # try again a heartbeat later: never lost
                self.out.append(SetTimer(name, self.now + self.config.heartbeat_interval_s))

    def _on_event(self, event: Event) -> None:
        match event:
            case MessageReceived(sender, message):
                self._on_message(sender, message)
            case TimerFired(name):
                self._on_timer(name)
            case ClientRequested(request_id, request):
                self._on_client_request((self.id, request_id), request)
            case TaskCompleted(task_id, attempt_id, outcome, result, ended_at):
                self._on_task_completed(task_id, attempt_id, outcome, result, ended_at)
            case PeerRefused(node):
                self._on_refused(node)
            case PeerDiscovered(node, priority, address):
                if node != self.id and node not in self.peers:
                    self._add_peer(node, priority, address)
                    self._send(node, Join(self.priority, self.address, self.config.slots))
            case Started():
                self.leader_heard_at = self.now
                self.out.append(SetTimer("tick", self.now + self.config.heartbeat_interval_s))
            case ShutdownRequested():
                self._leave()
            case _:
                raise TypeError(f"not an event: {event!r}")

    def _leave(self) -> None:
        """The operator stops this node: it leads no more, stands for no election, takes no work.

        Peers hear LEAVE and fail over at once; whatever this node still
        runs is taken back by the next leader (its lease ends with the node).
        """
        self.stopping = True
        if self.role in (Role.LEADER, Role.GATHERING):
            self._step_down("leaving the cluster")
        if self.role is not Role.MEMBER:
            self._become(Role.MEMBER, Trigger.LEAVE)
        self.leader = None
        for peer in self.peers.values():
            self._send(peer.node, Leave())

    # -- roles ------------------------------------------------------------------------
    def _become(self, role: Role, trigger: Trigger) -> None:
        """Change role; a move the rules never make is a bug and raises."""
        if trigger not in TRANSITIONS.get((self.role, role), ()):
            raise IllegalTransition(f"invalid transition [{self.role.value} -> {role.value}] "
                                    f"on {trigger.value}")
        self.role = role

    def _become_leader(self) -> None:
        self._become(Role.LEADER, Trigger.GATHERED)
        self.lead.gather = None
        if self.config.quorum:
            # Wait out any lease an older leader may still hold (G3).
            self.lead.serve_from = self.now + self.config.failure_timeout_s
            self.out.append(SetTimer("serve", self.lead.serve_from))
        self._rebuild_assignments()
        self._choose_followers()
        self.out.append(Note("leader_elected", {"node": self.id, "term": str(self.term),
                                                "tasks": len(self.table)}))
        self._heartbeat()

    def _step_down(self, reason: str) -> None:
        """Leave leadership: every request waiting on it fails so clients retry; its state goes."""
        lead, self.lead = self.lead, None
        for item in lead.pending:
            if item.kind == "reply":
                self._reply(item.target, error(ErrorCode.LEADER_CHANGED, "leadership changed before the "
                                               "request was replicated; retry (it is idempotent)"))
        for task_id, targets in lead.waiters.items():
            for target in targets:
                self._reply(target, error(ErrorCode.LEADER_CHANGED, "leadership changed; wait again"))
        self._drop_bulk("snapshot")
        self.out.append(Note("stepped_down", {"node": self.id, "term": str(self.term), "reason": reason}))

    # -- state ---------------------------------------------------------------------------
    def _merge(self, record: TaskRecord) -> TaskRecord | None:
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
            self._note_running(new.task_id, attempt)
        if new.task_id in lead.waiters and new.state.terminal:
            for target in lead.waiters.pop(new.task_id):
                self._reply(target, {"ok": True, "task": describe(new)})
        return new

    def _send(self, to: NodeId, message: Any) -> None:
        self.out.append(Send(to, message))

    def _send_parts(self, to: NodeId, kind: str, parts: Iterator) -> None:
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
        self._send_bulk()

    def _drop_bulk(self, kind: str) -> None:
        for key in [key for key in self.bulk if key[1] == kind]:
            del self.bulk[key]

    def _send_bulk(self) -> None:
        records, size = BULK_RECORDS, BULK_BYTES
        for key in list(self.bulk):
            parts = self.bulk[key]
            while records > 0 and size > 0:
                message = next(parts, None)
                if message is None:
                    del self.bulk[key]
                    break
                self._send(key[0], message)
                records -= max(1, len(message.records))
                size -= sum(r.approx_bytes for r in message.records)
                if message.part == message.parts - 1:
                    del self.bulk[key]
                    break

    # -- membership and failure detection ---------------------------------------------------
    def _add_peer(self, node: NodeId, priority: int, address: tuple | None) -> Peer:
        peer = Peer(node, priority, address, last_heard=self.now)
        self.peers[node] = peer
        self.out.append(Note("node_joined", {"node": node, "priority": priority}))
        if self.role is Role.LEADER:
            self._choose_followers()
        return peer

    def _heard(self, peer: Peer) -> None:
        peer.last_heard = self.now
        if not peer.alive:
            peer.alive = True
            self.out.append(Note("node_alive", {"node": peer.node}))
            if self.role is Role.LEADER:
                self._choose_followers()

    def _declare_dead(self, peer: Peer, why: str) -> None:
        peer.alive = False
        self._fail_forwarded(ErrorCode.LEADER_CHANGED, to=peer.node)
        if self.lead is not None:
            self.lead.peer_offers.pop(peer.node, None)
        self.out.append(Note("node_dead", {"node": peer.node, "why": why}))
        if self.role is Role.LEADER:
            self._reclaim_node(peer.node)
            self._choose_followers()
        if peer.node == self.leader:
            self._start_election(f"leader {peer.node} {why}")

    def _forget_departed(self) -> None:
        """Drop peers dead for forget_after_s: no heartbeats, redials or queued frames for them.

        A forgotten node that comes back is met as a new one (it announces
        itself, mDNS or a seed finds it). Nobody brings it back meanwhile:
        gossip and heartbeats spread only the dead that a node already knows.
        """
        for peer in list(self.peers.values()):
            if peer.alive:
                self.dead_since.pop(peer.node, None)
                continue
            since = self.dead_since.setdefault(peer.node, self.now)
            if self.now - since < self.config.forget_after_s:
                continue
            del self.peers[peer.node]
            del self.dead_since[peer.node]
            if self.lead is not None:
                self.lead.forget_node(peer.node)
            self.out.append(ForgetPeer(peer.node))
            self.out.append(Note("node_forgotten", {"node": peer.node, "dead_s": round(self.now - since, 1)}))

    def _leader_alive(self) -> bool:
        return self.leader is not None and not self._leader_silent()

    def _leader_silent(self) -> bool:
        """No word from a leader for a failure timeout (a new node waits that long too)."""
        leader = self.peers.get(self.leader) if self.leader is not None else None
        refused = leader is not None and leader.refused_at >= self.leader_heard_at
        limit = self.config.refused_timeout_s if refused else self.config.failure_timeout_s
        return self.now - self.leader_heard_at > limit

    def _peer_silent(self, peer: Peer) -> bool:
        """A leader's view of a member: silent for a failure timeout (less if it refused us)."""
        refused = peer.refused_at >= peer.last_heard
        limit = self.config.refused_timeout_s if refused else self.config.failure_timeout_s
        return self.now - peer.last_heard > limit

    def _on_refused(self, node: NodeId) -> None:
        """A dial to `node` was refused: its process is gone, most likely.

        It only shortens the wait: a node we heard from within the shorter
        timeout is still alive (a refused dial is no proof of death, say over
        a one-way firewall rule), and the judgement is the tick's, made now.
        """
        peer = self.peers.get(node)
        if peer is None or self.stopping:
            return
        peer.refused_at = self.now
        if self.role is Role.LEADER and peer.alive and self._peer_silent(peer):
            self._declare_dead(peer, "refused connections")
        elif self.role is Role.MEMBER and node == self.leader:
            self._check_leader()

    def _has_quorum(self) -> bool:
        live = 1 + sum(1 for p in self.peers.values() if p.alive)
        return live >= self.config.majority

    # -- timers -----------------------------------------------------------------------------
    def _on_timer(self, name: str) -> None:
        if name == "tick":
            # Armed first: the heartbeat must go on even if this tick's work fails.
            self.out.append(SetTimer("tick", self.now + self.config.heartbeat_interval_s))
            self._tick()
            self._send_bulk()
        elif name == "election":
            self._on_election_timer()
        elif name == "gather":
            self._on_gather_timer()
        elif name == "retry":
            self._on_retry_timer()


    def _tick(self) -> None:
        if self.stopping:
            return
        self._forget_departed()
        if self.role is Role.LEADER:
            for peer in list(self.peers.values()):
                if peer.alive and self._peer_silent(peer):
                    self._declare_dead(peer, "stopped answering")
            self._sweep_leases()
            self._maybe_prune()
            self._heartbeat()
            self._resend_stalled()
        elif self.role is Role.GATHERING and (not self.config.quorum
                                              or len(self.lead.offers_from) >= self.config.majority):
            # A gather that runs long (big offers to merge) must not look like a dead
            # leader to the nodes that accepted our term. A quorum minority stays quiet.
            for peer in self.peers.values():
                self._send(peer.node, Heartbeat(self.term, self.priority, (), (), False))
        elif self.role is Role.MEMBER and not self._check_leader():
            self._resend_finished()

    def _check_leader(self) -> bool:
        """A member whose leader fell silent starts an election; True if it did."""
        if not self._leader_silent():
            return False
        if self.leader in self.peers:
            self.peers[self.leader].alive = False
        self._start_election("leader silent" if self.leader else "no leader")
        return True

    def _heartbeat(self) -> None:
        lead = self.lead
        members = [Member(self.id, self.priority, self.address, True, self.config.slots, lead.holding(self.id))]
        members += [Member(p.node, p.priority, p.address, p.alive, p.slots, lead.holding(p.node))
                    for p in self.peers.values()]
        members_t, followers = tuple(members), tuple(lead.followers)
        digests = None
        for peer in self.peers.values():
            want = peer.node not in lead.offers_from
            if want and peer.alive and digests is None:
                digests = self.table.digests()
            self._send(peer.node, Heartbeat(self.term, self.priority, members_t, followers, want,
                                            digests if want and peer.alive else b""))

    # -- messages -----------------------------------------------------------------------------
    def _on_message(self, sender: NodeId, msg: Any) -> None:
        peer = self.peers.get(sender)
        if peer is None:
            priority = getattr(msg, "priority", None)
            if priority is None or sender == self.id:
                return  # a stranger we cannot rank yet; it will introduce itself
            peer = self._add_peer(sender, priority, getattr(msg, "address", None))
            if isinstance(msg, Join):
                self._introduce(sender)
        if isinstance(msg, Leave):
            peer.last_heard = float("-inf")
            if peer.alive:
                self._declare_dead(peer, "left")
            return
        self._heard(peer)
        if isinstance(msg, (Heartbeat, Coordinator)) and msg.digests and msg.term >= self.term:
            self.leader_digests = (msg.term, msg.digests)  # before the term is accepted (and offered to)
        policy = TERM_POLICY.get(type(msg), ANY)  # a client request sent as a peer message: ignored below
        if policy is OBEYED:
            if not self._fence(sender, msg.term):
                return
        elif policy is RAISES:
            self._see_term(msg.term)
        self._route(sender, peer, msg)

    def _route(self, sender: NodeId, peer: Peer, msg: Any) -> None:
        match msg:
            case Heartbeat():
                self._on_heartbeat(sender, msg)
            case HeartbeatAck():
                self._on_heartbeat_ack(sender, msg)
            case Append():
                self._on_append(sender, msg)
            case AppendAck():
                self._on_append_ack(sender, msg)
            case Dispatch():
                self._on_dispatch(sender, msg)
            case Finished():
                self._on_finished(sender, msg)
            case FinishedAck():
                self._on_finished_ack(msg)
            case CancelRun():
                self._on_cancel_run(msg)
            case Election():
                self._on_election(sender, msg)
            case Answer():
                self._on_answer(sender, msg)
            case Coordinator():
                self._on_coordinator(sender, msg)
            case StateOffer():
                self._on_state_offer(sender, msg)
            case Reject():
                self._on_reject(sender, msg)
            case Join(priority, address, slots):
                peer.priority, peer.address, peer.slots = priority, address or peer.address, slots
                if self.role is Role.LEADER:
                    self._heartbeat_one(sender)
            case Gossip(members):
                for m in members:
                    if m.node != self.id and m.node not in self.peers and m.alive:
                        self._add_peer(m.node, m.priority, m.address)
                        self._send(m.node, Join(self.priority, self.address, self.config.slots))
            case Forward(origin, request_id, request):
                self._on_client_request((origin, request_id), request)
            case ForwardReply(request_id, body):
                if self.forwarded.pop(request_id, None) is not None:
                    self._answer(request_id, body)

    def _fence(self, sender: NodeId, term: Term) -> bool:
        """G3: obey a leader's message only under the term we accepted."""
        if term.node != sender:
            return False
        if term < self.term:
            self._send(sender, Reject(self.term))
            return False
        if term > self.term:
            if not self._accept_leader(sender, term):
                return False  # we bully it, or stay with our live higher leader
        elif sender != self.leader:
            # Our own election was in vain: the leader of our term is alive.
            self._become(Role.MEMBER, Trigger.OUR_LEADER)
            self.leader = sender
            self.answered_by = None
        self.leader_heard_at = self.now
        return True

    def _on_heartbeat(self, sender: NodeId, msg: Heartbeat) -> None:
        for m in msg.members:
            if m.node == self.id or (m.node not in self.peers and not m.alive):
                continue  # the dead we do not know stay unknown (or a forgotten one comes back)
            peer = self.peers.get(m.node) or self._add_peer(m.node, m.priority, m.address)
            peer.address = m.address or peer.address
            if m.node != sender:
                peer.alive = m.alive
        if msg.members:
            # Gossip back what the leader does not know: with --peer seeds two
            # nodes may know each other only through us.
            listed = {m.node for m in msg.members}
            missing = tuple(Member(p.node, p.priority, p.address, p.alive, p.slots, 0)
                            for p in self.peers.values() if p.node not in listed and p.alive)
            if missing:
                self._send(sender, Gossip(missing))
        self.followed_by = msg.followers
        self._send(sender, HeartbeatAck(self.term, self.config.slots, self._busy()))
        if msg.want_offer:
            self._send_offer(again=True)
        self._resend_finished()

    def _introduce(self, newcomer: NodeId) -> None:
        """Tell a node that just introduced itself whom we know; it joins them in turn.

        Membership must not wait for a leader: with --peer seeds and no
        multicast, nodes that know only the seed each think themselves the
        highest and, in quorum mode, none can gather a majority to lead, so
        the leader's heartbeats would never spread the peer list.
        """
        known = tuple(Member(p.node, p.priority, p.address, p.alive, p.slots, 0)
                      for p in self.peers.values() if p.node != newcomer and p.alive)
        if known:
            self._send(newcomer, Gossip(known))

    def _heartbeat_one(self, node: NodeId) -> None:
        want = node not in self.lead.offers_from
        self._send(node, Heartbeat(self.term, self.priority, (), tuple(self.lead.followers), want,
                                   self.table.digests() if want else b""))

    # -- client requests ------------------------------------------------------------------------
    def _reply(self, target: tuple[NodeId, int], body: dict) -> None:
        origin, request_id = target
        if origin == self.id:
            self.out.append(Reply(request_id, body))
        else:
            self._send(origin, ForwardReply(request_id, body))

    def _fail_forwarded(self, code: ErrorCode, to: NodeId | None = None) -> None:
        """Answer the requests we handed to `to` (to anyone: None) with an error to retry."""
        for request_id, target in list(self.forwarded.items()):
            if to is None or target == to:
                del self.forwarded[request_id]
                self._answer(request_id, error(code, "the leader changed while handling the request; retry"))

    def _answer(self, request_id: int, body: dict) -> None:
        """The reply to a request we forwarded: to our client, or back to the node we relay for."""
        origin = self.relays.pop(request_id, None)
        if origin is not None:
            self._reply(origin, body)
        else:
            self.out.append(Reply(request_id, body))

    def _hand_on(self, to: NodeId, target: tuple[NodeId, int], request: Any) -> None:
        """Forward a request to `to`; one from another node is relayed under an id of ours,
        so the answer comes back through us (the asker may not reach `to`)."""
        request_id = target[1]
        if target[0] != self.id:
            self.relay_counter -= 1
            request_id = self.relay_counter
            self.relays[request_id] = target
        self.forwarded[request_id] = to
        self._send(to, Forward(self.id, request_id, request))

    def _on_client_request(self, target: tuple[NodeId, int], request: Any) -> None:
        if isinstance(request, Query) and request.what == "peers":
            self._reply(target, {"ok": True, **self.view()})
        elif self.role is Role.LEADER:
            self._serve(target, request)
        elif self.leader not in (None, self.id) and self._leader_alive():
            # A request another node forwarded to us (it cannot reach the leader, or took us
            # for the leader) is relayed too: a bridge node carries its side's requests.
            self._hand_on(self.leader, target, request)
        elif (target[0] == self.id and self.role in (Role.ELECTING, Role.WAITING)
              and self.answered_by in self.peers and self.peers[self.answered_by].alive):
            # A higher node answered our election but no COORDINATOR reaches us: it has a
            # leader we cannot hear (a bridge). It relays our clients' requests meanwhile.
            self._hand_on(self.answered_by, target, request)
        elif self.config.quorum and not self._has_quorum():
            live = 1 + sum(1 for p in self.peers.values() if p.alive)
            self._reply(target, error(ErrorCode.NO_QUORUM, f"no quorum: this node sees {live} of "
                                      f"{self.config.quorum} nodes"))
        else:
            self._reply(target, error(ErrorCode.NO_LEADER, "no leader yet (an election is in progress); "
                                      "retry shortly"))

    def _serve(self, target: tuple[NodeId, int], request: Any) -> None:
        match request:
            case Submit(tasks):
                self._submit(target, tasks)
            case Cancel(task_id):
                self._cancel(target, task_id)
            case Wait(task_id):
                self._wait(target, task_id)
            case Query(what, params):
                self._reply(target, self._query(what, params))
            case _:
                self._reply(target, error(ErrorCode.INVALID, f"unknown request {type(request).__name__}"))

    def _submit(self, target: tuple[NodeId, int], tasks: tuple) -> None:
        if self.config.quorum and not self._has_quorum():
            self._reply(target, error(ErrorCode.NO_QUORUM, "no quorum: the leader cannot reach a majority"))
            return
        if not self.lead.followers and not self._may_ack_unreplicated():
            self._reply(target, error(ErrorCode.UNREPLICATED, "no other node is reachable to hold a copy "
                                      "of the task (G1); retry when another node is up"))
            return
        try:
            for _, spec in tasks:
                spec.validate()
        except ValueError as exc:
            self._reply(target, error(ErrorCode.INVALID, str(exc)))
            return
        chosen: dict[str, TaskSpec] = {}
        for task_id, spec in tasks:
            if not task_id:
                continue  # the leader chooses the id
            held = self.table.get(task_id)
            earlier = held.spec if held is not None else chosen.setdefault(task_id, spec)
            if earlier != spec:
                # A retried submit must carry the same task; a reused id for another one is refused.
                self._reply(target, error(ErrorCode.CONFLICT, f"task {task_id} already exists with a different "
                                          "spec; choose another id"))
                return
        ids = []
        for task_id, spec in tasks:
            task_id = task_id or f"{self.rng.getrandbits(64):016x}"
            if task_id not in self.table and task_id not in self.forgotten:
                self.submit_counter += 1
                seq = (self.term.number, self.submit_counter)
                self._merge(TaskRecord(task_id, spec, seq, self.now))
            ids.append(task_id)
        self.lead.await_commit("reply", target, submit_ack(ids, bool(self.lead.followers), self.id, str(self.term)))

    def _cancel(self, target: tuple[NodeId, int], task_id: str) -> None:
        record = self.table.get(task_id)
        if record is None:
            self._reply(target, self._unknown(task_id))
            return
        if not record.state.terminal:
            record = self._merge(replace(record, cancelled=True)) or record
            self._cancel_attempts(record)
        self.lead.await_commit("reply", target, {"ok": True, "id": task_id, "state": record.state.value})

    def _wait(self, target: tuple[NodeId, int], task_id: str) -> None:
        record = self.table.get(task_id)
        if record is None:
            self._reply(target, self._unknown(task_id))
        elif record.state.terminal:
            self._reply(target, {"ok": True, "task": describe(record)})
        else:
            self.lead.waiters.setdefault(task_id, []).append(target)

    def _query(self, what: str, params: dict) -> dict:
        if what == "task":
            record = self.table.get(str(params.get("id")))
            if record is None:
                return self._unknown(str(params.get("id")))
            return {"ok": True, "task": describe(record)}
        if what == "list":
            return {"ok": True, **self._list(params)}
        if what == "stats":
            return {"ok": True, **self.stats()}
        return error(ErrorCode.INVALID, f"unknown query {what!r}")

    def _unknown(self, task_id: str) -> dict:
        if task_id in self.forgotten:
            return error(ErrorCode.UNKNOWN_TASK, f"task {task_id} finished and was pruned (retention: "
                         f"{self.config.retain_finished} tasks or {self.config.retain_finished_s:g} s)")
        return error(ErrorCode.UNKNOWN_TASK, f"no task with id {task_id}")

    def _list(self, params: dict) -> dict:
        state = params.get("state")
        records = [r for r in self.table.values() if state is None or r.state.value == state]
        records.sort(key=lambda r: r.seq, reverse=True)
        offset, limit = params.get("offset", 0), params.get("limit", 50)
        return {"total": len(records), "tasks": [describe(r) for r in records[offset:offset + limit]]}

    def _complete(self, item: PendingAck) -> None:
        if item.kind == "reply":
            self._reply(item.target, item.body or {"ok": True})
        elif item.kind == "finished":
            node, attempt_id = item.target
            if node == self.id:
                self.unacked.pop(attempt_id, None)
            else:
                self._send(node, FinishedAck(self.term, (attempt_id,)))

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


__all__ = ["NodeCore", "Peer", "error", "TaskState"]
