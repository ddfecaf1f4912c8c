"""Bully election with terms (Garcia-Molina 1982), plus fencing.

Theory of operation
-------------------
Every node has a unique rank (priority, node id). The live node of highest
rank should lead; terms make every leadership distinct and only growing.

1. A node suspects the leader when it has not heard from it for
   ``failure_timeout_s`` (or the leader said it is leaving). It then sends
   ELECTION to every higher-ranked node not known to be dead and waits
   ``answer_timeout_s``.
2. A node that receives ELECTION from a lower node ANSWERs it. If it leads,
   it re-announces itself; if it has no live leader, it starts its own
   election (the bully step).
3. A candidate that got an ANSWER waits ``coordinator_timeout_s`` for a
   COORDINATOR, then starts over. A candidate that got no ANSWER has won.
4. The winner takes the term (highest number seen + 1, its own id) and
   persists it before it says anything, announces COORDINATOR to everyone,
   and *gathers*: every node that accepts the term replies with all the task
   records it holds, and the winner merges them before it serves. In quorum
   mode it serves only once a majority has accepted (G3).
5. Fencing (G3): a node obeys only messages of the term it accepted. An
   older term is refused with REJECT(newer term); a newer term from a
   leader is accepted on sight (a missed COORDINATOR). A leader that hears
   REJECT stops leading: if it outranks the newer term's leader it runs a
   new election at once, otherwise it waits to hear from that leader. So the
   higher-ranked one ends up leading with a term above both, holding the
   merge of both sides (L2).
6. A higher-ranked node that joins a running cluster first catches up: it
   obeys the current leader, becomes its follower (the leader picks the
   highest-ranked nodes as followers) and takes over only after it has
   applied the leader's snapshot. No acknowledged task depends on it being
   up to date, because the gather of step 4 collects everything anyway.
"""

from __future__ import annotations

from . import clients, compaction, replication, scheduler
from .errors import ErrorCode, error
from .events import Note, SetTimer
from .leader import Gather, Leadership
from .messages import Answer, Coordinator, Election, Reject, StateOffer
from .state import NodeState
from .tasks import next_part, stream_chunks
from .types import NodeId, Role, Term, Trigger


# -- starting and finishing an election -------------------------------------
def start_election(core: NodeState, reason: str) -> None:
    """Bully step 1: ask every higher node; none answering means we won."""
    if core.stopping:
        return  # a leaving node never stands for election
    if core.role is Role.LEADER or core.role is Role.GATHERING:
        step_down(core, reason)
    core.become(Role.ELECTING, Trigger.ELECTION)
    if core.leader not in (None, core.id):
        clients.fail_forwarded(core, ErrorCode.LEADER_CHANGED, to=core.leader)
    core.leader = None
    core.out.append(Note("election_started", {"node": core.id, "reason": reason}))
    # Nodes known dead (silent, left, or no answer last time) are not asked;
    # one that comes back announces itself and is bullied in again (step 6).
    higher = [p for p in core.peers.values() if p.rank > core.rank and p.alive]
    if not higher:
        _win(core)
        return
    for peer in higher:
        core.send(peer.node, Election(core.max_term, core.priority))
    core.election_deadline = core.now + core.config.answer_timeout_s
    core.out.append(SetTimer("election", core.election_deadline))


def defer(core: NodeState) -> bool:
    """Ranked election, step 1: with a live node above us, the bully winner is at most that high;
    wait for its COORDINATOR instead of electing (O(n) messages, not O(n^2)). True if we wait.

    Only the highest live node elects, at once, and announces. If no
    COORDINATOR comes within an answer and a coordinator timeout (that node
    died too, or we disagree on who is alive), the classic election runs
    (on_no_coordinator).
    """
    above = [p for p in core.peers.values() if p.alive and p.rank > core.rank]
    if not above or core.stopping or core.role is not Role.MEMBER:
        return False
    core.become(Role.WAITING, Trigger.DEFERRED)
    clients.fail_forwarded(core, ErrorCode.LEADER_CHANGED, to=core.leader)
    top = max(above, key=lambda p: p.rank)
    core.out.append(Note("election_deferred", {"node": core.id, "to": top.node, "leader": core.leader}))
    core.leader = None
    core.election_deadline = core.now + core.config.answer_timeout_s + core.config.coordinator_timeout_s
    core.out.append(SetTimer("election", core.election_deadline))
    return True


def _win(core: NodeState) -> None:
    """Bully step 4: take a new term, persist it, announce, then gather."""
    term = Term(core.max_term.number + 1, core.id)
    core.adopt_term(term)
    core.leader = core.id
    core.become(Role.GATHERING, Trigger.NO_ANSWER)
    core.answered_by = None
    expected = {p.node for p in core.peers.values() if p.alive}
    core.lead = Leadership(term, Gather(expected, core.now + core.config.gather_timeout_s),
                           offers_from={core.id})
    for peer in core.peers.values():
        if peer.alive:  # a full failure timeout to answer before we judge them
            peer.last_heard = max(peer.last_heard, core.now)
    digests = core.table.digests()
    for peer in core.peers.values():
        core.send(peer.node, Coordinator(term, core.priority, digests))
    core.out.append(Note("coordinator", {"node": core.id, "term": str(term)}))
    core.out.append(SetTimer("gather", core.lead.gather.deadline))
    _maybe_finish_gather(core)


def _maybe_finish_gather(core: NodeState, timed_out: bool = False) -> None:
    if core.role is not Role.GATHERING:
        return
    offers_from = core.lead.offers_from
    everyone = core.lead.gather.expected <= offers_from
    if core.config.quorum:
        if len(offers_from) < core.config.majority:
            if timed_out:  # keep asking; a minority never serves (G3)
                _resend_coordinator(core)
            return
        if not (everyone or timed_out):
            return
    elif not (everyone or timed_out):
        return
    become_leader(core)


def become_leader(core: NodeState) -> None:
    """The gather is over: serve (in quorum mode, once any older leader's lease ran out)."""
    core.become(Role.LEADER, Trigger.GATHERED)
    core.lead.gather = None
    if core.config.quorum:
        # Wait out any lease an older leader may still hold (G3).
        core.lead.serve_from = core.now + core.config.failure_timeout_s
        core.out.append(SetTimer("serve", core.lead.serve_from))
    scheduler.rebuild_assignments(core)
    replication.choose_followers(core)
    core.decide_blocked()
    core.out.append(Note("leader_elected", {"node": core.id, "term": str(core.term),
                                            "tasks": len(core.table)}))
    replication.heartbeat(core)


def step_down(core: NodeState, reason: str) -> None:
    """Leave leadership: every request waiting on it fails so clients retry; its state goes."""
    core.push_ended()  # what ended before the step down still reaches its watchers
    lead, core.lead = core.lead, None
    for item in lead.pending:
        if item.kind == "reply":
            core.reply(item.target, error(ErrorCode.LEADER_CHANGED, "leadership changed before the "
                                          "request was replicated; retry (it is idempotent)"))
    waiting = dict.fromkeys(target for targets in lead.waiters.values() for target in targets)
    for target in waiting:  # a watch waits on many tasks: it is told once
        core.reply(target, error(ErrorCode.LEADER_CHANGED, "leadership changed; wait again"))
    core.drop_bulk("snapshot")
    core.out.append(Note("stepped_down", {"node": core.id, "term": str(core.term), "reason": reason}))


def _resend_coordinator(core: NodeState) -> None:
    for peer in core.peers.values():
        if peer.node not in core.lead.offers_from:
            core.send(peer.node, Coordinator(core.term, core.priority))
    core.lead.gather.deadline = core.now + core.config.gather_timeout_s
    core.out.append(SetTimer("gather", core.lead.gather.deadline))


# -- messages and timers, by role (the tables are in node.py) -----------------------
def _answer_lower(core: NodeState, sender: NodeId) -> bool:
    """Bully step 2: a lower node asks; say we are alive. False if we keep quiet."""
    if core.stopping:
        return False  # leaving: no ANSWER, so the lower node wins at once instead of waiting for us
    if core.peers[sender].rank > core.rank:
        return False  # only lower nodes ask us; a higher one asking is stale
    core.send(sender, Answer(core.term))
    return True


def answer(core: NodeState, sender: NodeId, msg: Election) -> None:
    """A candidate answers (step 2) and goes on with its own election."""
    _answer_lower(core, sender)


def answer_and_announce(core: NodeState, sender: NodeId, msg: Election) -> None:
    """A leader (or gatherer) answers and announces itself again (step 2)."""
    if _answer_lower(core, sender):
        core.send(sender, Coordinator(core.term, core.priority))


def answer_and_bully(core: NodeState, sender: NodeId, msg: Election) -> None:
    """A member answers and, if it has no live leader, starts its own election (step 2)."""
    if _answer_lower(core, sender) and not core.leader_alive():
        start_election(core, "a lower node asked")


def note_answer(core: NodeState, sender: NodeId, msg: Answer) -> None:
    """A higher node that answered: client requests go there while we wait for it (a bridge)."""
    answerer = core.peers[sender]
    if answerer.rank > core.rank and (core.answered_by not in core.peers
                                      or answerer.rank > core.peers[core.answered_by].rank):
        core.answered_by = sender


def on_answer(core: NodeState, sender: NodeId, msg: Answer) -> None:
    """Bully step 3: a higher node is alive; wait for its COORDINATOR."""
    note_answer(core, sender, msg)
    if core.peers[sender].rank > core.rank:
        core.become(Role.WAITING, Trigger.ANSWER)
        core.election_deadline = core.now + core.config.coordinator_timeout_s
        core.out.append(SetTimer("election", core.election_deadline))


def _early(core: NodeState, timer: str, deadline: float) -> bool:
    """A timer that fired before its deadline is armed again for it; True if it was early.

    A driver's timer may fire a little before its time (asyncio runs timers
    up to its clock resolution early; the simulator's clock rates round).
    Not re-armed, it would leave us electing for good.
    """
    if core.now < deadline:
        core.out.append(SetTimer(timer, deadline))
        return True
    return False


def on_no_answer(core: NodeState) -> None:
    """Bully steps 3 and 4: no higher node answered in time; we won."""
    if _early(core, "election", core.election_deadline) or core.stopping:
        return
    for peer in core.peers.values():
        if peer.rank > core.rank:
            peer.alive = False  # no ANSWER: the higher nodes are gone
    _win(core)


def on_no_coordinator(core: NodeState) -> None:
    """Bully step 3: a higher node answered but never announced itself; start over."""
    if _early(core, "election", core.election_deadline) or core.stopping:
        return
    start_election(core, "no coordinator after an answer")


def on_gather_timer(core: NodeState) -> None:
    """Step 4: the gather's time is up; lead with what came (in quorum mode, only with a majority)."""
    if not _early(core, "gather", core.lead.gather.deadline):
        _maybe_finish_gather(core, timed_out=True)


def on_coordinator(core: NodeState, sender: NodeId, msg: Coordinator) -> None:
    """Step 4, heard: obey a newer term, refuse an older one (step 5), offer again on a repeat."""
    if msg.term.node != sender:
        return
    if msg.term < core.term:
        core.send(sender, Reject(core.term))
    elif msg.term > core.term:
        accept_leader(core, sender, msg.term)
    elif sender == core.leader:
        send_offer(core, again=True)  # asked again: our offer may have been lost


def on_reject(core: NodeState, sender: NodeId, msg: Reject) -> None:
    """Fencing (step 5, G3): our term is stale, so we stop leading.

    If we outrank the newer term's leader we bully it at once (with a
    term above its own). Otherwise we wait for that leader to reach us
    (gossip introduces it); if it never does, the failure timeout starts
    an election as usual. Re-electing at once here would make nodes that
    do not yet know each other fence each other in turn.
    """
    if msg.term <= core.term:
        return
    owner = core.peers.get(msg.term.node)
    if owner is not None and core.rank > owner.rank:
        start_election(core, f"fenced by term {msg.term}")
        return
    step_down(core, f"fenced by term {msg.term}")
    core.become(Role.MEMBER, Trigger.FENCED)
    core.leader = None
    core.leader_heard_at = core.now


def take_offer(core: NodeState, sender: NodeId, msg: StateOffer) -> None:
    """Merge whatever a node offers, in any role: records are facts whatever their term."""
    compaction.forget(core, msg.forgotten)
    for record in msg.records:
        core.merge(record)
    for task_id, attempt in msg.running:
        core.note_running(task_id, attempt)


def gather_offer(core: NodeState, sender: NodeId, msg: StateOffer) -> None:
    """Step 4: a leader (or gatherer) merges an offer and counts it once whole.

    A big table comes in parts; the offer counts only once every part
    came, in order (a gap leaves the sender asked again, by heartbeat).
    """
    take_offer(core, sender, msg)
    lead = core.lead
    if msg.digests and msg.offer_id:
        lead.peer_offers[sender] = (msg.offer_id, msg.digests)
    if msg.parts > 1 and not _offer_complete(core, sender, msg):
        return
    if msg.term == core.term:
        lead.offers_from.add(sender)
        _maybe_finish_gather(core)


def _offer_complete(core: NodeState, sender: NodeId, msg: StateOffer) -> bool:
    parts = core.lead.offer_parts
    progress, whole = next_part(parts.pop(sender, None), msg.term, msg.part, msg.parts)
    if progress is not None:
        parts[sender] = progress
    return whole is True


# -- accepting and leaving leadership -----------------------------------------------
def accept_leader(core: NodeState, leader: NodeId, term: Term) -> bool:
    """Obey a leader of a newer term and hand it everything we hold; False if
    we bully it instead.

    A leader that outranks the newer term's owner does not obey it: a
    lower node took that term while it could not hear us (a partition, a
    pause). Obeying would hand leadership down and back up again (obey,
    catch up, take over: two changes of leader and two gaps); bullying at
    once, with a term above its own, takes one, and the gather merges
    what the lower node acknowledged meanwhile (L2). A gatherer obeys: it
    may be a quorum minority that knows too few nodes to ever lead, and
    the lower leader's heartbeats are how it meets the rest.
    """
    owner = core.peers.get(leader)
    if (core.role is Role.LEADER and owner is not None
            and core.rank > owner.rank and not core.stopping):
        core.see_term(term)
        start_election(core, f"outranks {leader}, leader of newer term {term}")
        return False
    ours = core.peers.get(core.leader) if core.leader not in (None, leader) else None
    if (core.role is Role.MEMBER and owner is not None and ours is not None
            and ours.rank > owner.rank and core.leader_alive()):
        # Our leader is alive and outranks the claimant, who cannot hear it (a
        # bridge, or a node that was cut off): we stay. Obeying would fence our
        # leader, which bullies back, and the two would take turns for as long
        # as the partition lasts. Our leader bullies the claimant when they meet.
        core.see_term(term)
        return False
    if core.role in (Role.LEADER, Role.GATHERING):
        step_down(core, f"leader {leader} has newer term {term}")
    if core.role is not Role.MEMBER:
        core.become(Role.MEMBER, Trigger.COORDINATOR)
    core.adopt_term(term)
    if core.leader not in (None, core.id, leader):
        clients.fail_forwarded(core, ErrorCode.LEADER_CHANGED, to=core.leader)
    core.leader = leader
    core.answered_by = None
    core.leader_heard_at = core.now
    core.applied_index = -1  # nothing of this term yet: a snapshot must come first
    core.caught_up = False
    core.out.append(Note("leader_accepted", {"node": core.id, "leader": leader, "term": str(term)}))
    send_offer(core)
    scheduler.resend_finished(core, force=True)
    return True


def send_offer(core: NodeState, again: bool = False) -> None:
    """What this node holds that its leader may lack, to the leader: in parts when big.

    With the leader's table digests (in its COORDINATOR, or a heartbeat
    that wants an offer) only the records of buckets whose digests
    differ go: after a failover most of a big table is the same on both.
    Without them, everything goes. The offer carries this node's own
    digests and an id, so the leader can snapshot it just as sparingly.

    Asked again (the leader's heartbeat wants an offer it has not got
    yet), a big offer is resent at most once per failure timeout: while
    the first is still on its way, resending it every heartbeat would
    only bury the leader in copies of it.
    """
    if core.leader is None or core.leader == core.id:
        return
    wait_s = core.config.failure_timeout_s if core.offer_sent_parts > 1 else core.config.heartbeat_interval_s
    if again and core.now - core.offer_sent_at < wait_s:
        return  # decided before cutting the table into parts again: that is the costly part
    theirs = core.leader_digests[1] if core.leader_digests and core.leader_digests[0] == core.term else b""
    records = list(core.table.values_unlike(theirs))
    core.offer_sent_at = core.now
    core.offer_sent_parts = max(1, -(-len(records) // core.config.max_batch))
    running = tuple((r.task_id, r.attempt(a)) for a, r in core.executing.items())
    offer_id = core.rng.getrandbits(62) + 1
    core.offer_ids.add(offer_id)
    term, mine, forgotten = core.term, core.table.digests(), tuple(core.forgotten)

    def parts():  # cut as they go, like a snapshot's (replication._send_snapshot)
        for n, chunk, last in stream_chunks(records, core.config.max_batch, core.config.max_chunk_bytes):
            yield StateOffer(term, tuple(chunk), running if last else (), forgotten if last else (),
                             n, n + 1 if last else n + 2, mine if last else b"", offer_id if last else 0)
    core.drop_bulk("offer")  # an offer to an earlier leader is moot
    core.send_parts(core.leader, "offer", parts())


def maybe_take_over(core: NodeState) -> None:
    """Step 6: a caught-up node that outranks its leader bullies it."""
    if core.role is not Role.MEMBER or core.leader is None or not core.caught_up:
        return
    leader = core.peers.get(core.leader)
    if leader is not None and core.rank > leader.rank:
        start_election(core, "caught up and outranks the leader")
