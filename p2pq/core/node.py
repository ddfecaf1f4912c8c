"""NodeCore: one p2pq node as a pure state machine.

``handle_batch(events, now) -> [commands]``. No sockets, clocks, files or
global randomness: time arrives as ``now`` and chance from the
``random.Random`` handed in, so the simulator and the runtime drive the
very same code and a seed replays a run exactly.

This module is the way in. Every event is handled on its own; a peer's
message passes the term gate (``TERM_POLICY``) and then goes to what the
node's role does with it (``ON_MESSAGE``); a timer likewise (``ON_TIMER``).
The rules themselves live below, each module calling only those under it:

    node.py          the entry point, the term gate, the role tables
    membership.py    peers, failure detection, gossip
    election.py      the bully election, the gather, fencing (steps 1-6)
    clients.py       client requests: served, forwarded, relayed
    replication.py   the leader's log, snapshots, commit; the follower's side
    scheduler.py     dispatch, running, results, leases
    compaction.py    pruning finished tasks, tombstones
    state.py         what a node knows, and the primitives every rule uses
    leader.py        what a node holds only while it leads
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Iterable

from . import clients, compaction, election, membership, replication, scheduler
from .errors import ErrorCode, error
from .events import (ClientRequested, Event, MessageReceived, Note, PeerDiscovered, PeerRefused, PersistRecords,
                     Reply, SetTimer, ShutdownRequested, Started, Step, TaskCompleted, TimerFired)
from .messages import (Answer, Append, AppendAck, CancelRun, Coordinator, Dispatch, Election, Finished,
                       FinishedAck, Forward, ForwardPush, ForwardReply, Gossip, Heartbeat, HeartbeatAck, Join, Leave,
                       Reject, StateOffer)
from .state import NodeState
from .types import InvariantViolation, NodeId, Role, Term, Trigger

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
    Leave: ANY, Forward: ANY, ForwardReply: ANY, ForwardPush: ANY,
}

Handler = Callable[[NodeState, NodeId, Any], None]
Timer = Callable[[NodeState], None]


def _follow(core: NodeState, sender: NodeId, msg: Append) -> None:
    if replication.on_append(core, sender, msg):
        election.maybe_take_over(core)  # step 6: caught up and outranking the leader, it bullies


def _lead_tick(core: NodeState) -> None:
    membership.declare_silent_dead(core)
    scheduler.sweep_leases(core)
    compaction.maybe_prune(core)
    replication.heartbeat(core)
    replication.resend_stalled(core)


def _gather_tick(core: NodeState) -> None:
    # A gather that runs long (big offers to merge) must not look like a dead
    # leader to the nodes that accepted our term. A quorum minority stays quiet.
    if not core.config.quorum or len(core.lead.offers_from) >= core.config.majority:
        for peer in core.peers.values():
            core.send(peer.node, Heartbeat(core.term, core.priority, (), (), False))


def _member_tick(core: NodeState) -> None:
    if not membership.check_leader(core):  # step 1 when the leader fell silent
        scheduler.resend_finished(core)


# What each role does with a peer's message once it passed the term gate. A
# message its role does not list is ignored. OBEYED messages reach only a
# member: the gate makes the node one or drops the message. Steps 1-6 are the
# bully steps of election.py.
_EVERY_ROLE: dict[type, Handler] = {
    Coordinator: election.on_coordinator,    # step 4 heard: obey a newer term, refuse an older (5)
    Answer: election.note_answer,            # whom to relay clients' requests through (a bridge)
    StateOffer: election.take_offer,         # facts, merged whatever the role
    HeartbeatAck: membership.note_slots,
    Join: membership.on_join,
    Gossip: membership.on_gossip,
    Forward: clients.on_forward,
    ForwardReply: clients.on_forward_reply,
    ForwardPush: clients.on_forward_push,
}
ON_MESSAGE: dict[Role, dict[type, Handler]] = {
    Role.LEADER: {
        **_EVERY_ROLE,
        Election: election.answer_and_announce,  # step 2
        StateOffer: election.gather_offer,       # step 4: a late offer still counts
        Reject: election.on_reject,              # step 5: fenced
        AppendAck: replication.on_append_ack,
        Finished: scheduler.on_finished,
        HeartbeatAck: scheduler.on_heartbeat_ack,  # leases: what the node no longer runs was lost
        Join: membership.on_join_leader,
    },
    Role.GATHERING: {
        **_EVERY_ROLE,
        Election: election.answer_and_announce,  # step 2
        StateOffer: election.gather_offer,       # step 4
        Reject: election.on_reject,              # step 5
    },
    Role.ELECTING: {
        **_EVERY_ROLE,
        Election: election.answer,               # step 2
        Answer: election.on_answer,              # step 3: wait for the COORDINATOR
    },
    Role.WAITING: {
        **_EVERY_ROLE,
        Election: election.answer,               # step 2
    },
    Role.MEMBER: {
        **_EVERY_ROLE,
        Election: election.answer_and_bully,     # step 2
        Heartbeat: membership.on_heartbeat,
        Append: _follow,                         # and step 6
        Dispatch: scheduler.on_dispatch,
        CancelRun: scheduler.on_cancel_run,
        FinishedAck: scheduler.on_finished_ack,
    },
}
# What each role does when a timer fires. `tick` (every heartbeat) is armed
# again first, in every role; `serve` only wakes the leader's end of step.
_EVERY_ROLE_TIMER: dict[str, Timer] = {"retry": scheduler.on_retry_timer}
ON_TIMER: dict[Role, dict[str, Timer]] = {
    Role.LEADER: {**_EVERY_ROLE_TIMER, "tick": _lead_tick},
    Role.GATHERING: {**_EVERY_ROLE_TIMER, "tick": _gather_tick, "gather": election.on_gather_timer},  # step 4
    Role.ELECTING: {**_EVERY_ROLE_TIMER, "election": election.on_no_answer},        # steps 3, 4
    Role.WAITING: {**_EVERY_ROLE_TIMER, "election": election.on_no_coordinator},    # step 3
    Role.MEMBER: {**_EVERY_ROLE_TIMER, "tick": _member_tick},                       # step 1
}


class NodeCore(NodeState):
    """The protocol of one node: feed it events, carry out its commands."""

    def handle(self, event: Event, now: float) -> Step:
        """Apply one event at time `now`; return what to make durable, then what to do."""
        return self.handle_batch((event,), now)

    def handle_batch(self, events: Iterable[Event], now: float) -> Step:
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
                scheduler.dispatch(self)
                replication.replicate(self)
                replication.advance_commit(self)
            except InvariantViolation:
                raise
            except Exception as exc:
                self._event_failed(None, exc)
        if self.ended_views:
            self.push_ended()
        if self.term < terms_before[0] or self.max_term < terms_before[1]:
            raise InvariantViolation(f"terms went back from {terms_before[0]} (seen {terms_before[1]}) "
                                     f"to {self.term} (seen {self.max_term}) (G3)")
        if self.dirty:
            self.persist.append(PersistRecords(tuple(self.dirty.values())))
            self.dirty = {}
        step = Step(tuple(self.persist), tuple(self.out))
        self.persist, self.out = [], []
        return step

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
                self.send(origin, ForwardReply(request_id, body))
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
                clients.on_client_request(self, (self.id, request_id), request)
            case TaskCompleted(task_id, attempt_id, outcome, result, ended_at):
                scheduler.on_task_completed(self, task_id, attempt_id, outcome, result, ended_at)
            case PeerRefused(node):
                membership.on_refused(self, node)
            case PeerDiscovered(node, priority, address):
                membership.meet(self, node, priority, address)
            case Started():
                self.leader_heard_at = self.now
                self.out.append(SetTimer("tick", self.now + self.config.heartbeat_interval_s))
            case ShutdownRequested():
                self._leave()
            case _:
                raise TypeError(f"not an event: {event!r}")

    def _on_timer(self, name: str) -> None:
        if name != "tick":
            handler = ON_TIMER[self.role].get(name)
            if handler is not None:
                handler(self)
            return
        # Armed first: the heartbeat must go on even if this tick's work fails.
        self.out.append(SetTimer("tick", self.now + self.config.heartbeat_interval_s))
        if not self.stopping:
            membership.forget_departed(self)
            tick = ON_TIMER[self.role].get("tick")
            if tick is not None:
                tick(self)
        self.send_bulk()

    def _leave(self) -> None:
        """The operator stops this node: it leads no more, stands for no election, takes no work.

        Peers hear LEAVE and fail over at once; whatever this node still
        runs is taken back by the next leader (its lease ends with the node).
        """
        self.stopping = True
        if self.role in (Role.LEADER, Role.GATHERING):
            election.step_down(self, "leaving the cluster")
        if self.role is not Role.MEMBER:
            self.become(Role.MEMBER, Trigger.LEAVE)
        self.leader = None
        for peer in self.peers.values():
            self.send(peer.node, Leave())

    # -- the term gate ---------------------------------------------------------------------
    def _on_message(self, sender: NodeId, msg: Any) -> None:
        peer = self.peers.get(sender)
        if peer is None:
            priority = getattr(msg, "priority", None)
            if priority is None or sender == self.id:
                return  # a stranger we cannot rank yet; it will introduce itself
            peer = membership.add_peer(self, sender, priority, getattr(msg, "address", None))
            if isinstance(msg, Join):
                membership.introduce(self, sender)
        if isinstance(msg, Leave):
            peer.last_heard = float("-inf")
            if peer.alive:
                membership.declare_dead(self, peer, "left")
            return
        membership.heard(self, peer)
        if isinstance(msg, (Heartbeat, Coordinator)) and msg.digests and msg.term >= self.term:
            self.leader_digests = (msg.term, msg.digests)  # before the term is accepted (and offered to)
        policy = TERM_POLICY.get(type(msg), ANY)
        if policy is OBEYED:
            if not self._fence(sender, msg.term):
                return
        elif policy is RAISES:
            self.see_term(msg.term)
        handler = ON_MESSAGE[self.role].get(type(msg))
        if handler is not None:  # None: ignored in this role (a client request sent as a peer message: always)
            handler(self, sender, msg)

    def _fence(self, sender: NodeId, term: Term) -> bool:
        """G3: obey a leader's message only under the term we accepted."""
        if term.node != sender:
            return False
        if term < self.term:
            self.send(sender, Reject(self.term))
            return False
        if term > self.term:
            if not election.accept_leader(self, sender, term):
                return False  # we bully it, or stay with our live higher leader
        elif sender != self.leader:
            # Our own election was in vain: the leader of our term is alive.
            self.become(Role.MEMBER, Trigger.OUR_LEADER)
            self.leader = sender
            self.answered_by = None
        self.leader_heard_at = self.now
        return True


__all__ = ["NodeCore", "ON_MESSAGE", "ON_TIMER", "TERM_POLICY"]
