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

from typing import TYPE_CHECKING

from .errors import ErrorCode
from .events import Note, PersistTerm, SetTimer
from .leader import Gather, Leadership
from .messages import Answer, Coordinator, Election, Reject, StateOffer
from .tasks import next_part, stream_chunks
from .types import Rank, Role, Term, Trigger

if TYPE_CHECKING:
    from .node import NodeCore

    _Base = NodeCore
else:
    _Base = object


class ElectionMixin(_Base):
    # -- starting and finishing an election -------------------------------------
    def _start_election(self, reason: str) -> None:
        """Bully step 1: ask every higher node; none answering means we won."""
        if self.stopping:
            return  # a leaving node never stands for election
        if self.role is Role.LEADER or self.role is Role.GATHERING:
            self._step_down(reason)
        self._become(Role.ELECTING, Trigger.ELECTION)
        if self.leader not in (None, self.id):
            self._fail_forwarded(ErrorCode.LEADER_CHANGED, to=self.leader)
        self.leader = None
        self.out.append(Note("election_started", {"node": self.id, "reason": reason}))
        # Nodes known dead (silent, left, or no answer last time) are not asked;
        # one that comes back announces itself and is bullied in again (step 6).
        higher = [p for p in self.peers.values() if p.rank > self.rank and p.alive]
        if not higher:
            self._win()
            return
        for peer in higher:
            self._send(peer.node, Election(self.max_term, self.priority))
        self.election_deadline = self.now + self.config.answer_timeout_s
        self.out.append(SetTimer("election", self.election_deadline))

    def _win(self) -> None:
        """Bully step 4: take a new term, persist it, announce, then gather."""
        term = Term(self.max_term.number + 1, self.id)
        self._adopt_term(term)
        self.leader = self.id
        self._become(Role.GATHERING, Trigger.NO_ANSWER)
        self.answered_by = None
        expected = {p.node for p in self.peers.values() if p.alive}
        self.lead = Leadership(term, Gather(expected, self.now + self.config.gather_timeout_s),
                               offers_from={self.id})
        for peer in self.peers.values():
            if peer.alive:  # a full failure timeout to answer before we judge them
                peer.last_heard = max(peer.last_heard, self.now)
        digests = self.table.digests()
        for peer in self.peers.values():
            self._send(peer.node, Coordinator(term, self.priority, digests))
        self.out.append(Note("coordinator", {"node": self.id, "term": str(term)}))
        self.out.append(SetTimer("gather", self.lead.gather.deadline))
        self._maybe_finish_gather()

    def _maybe_finish_gather(self, timed_out: bool = False) -> None:
        if self.role is not Role.GATHERING:
            return
        offers_from = self.lead.offers_from
        everyone = self.lead.gather.expected <= offers_from
        if self.config.quorum:
            if len(offers_from) < self.config.majority:
                if timed_out:  # keep asking; a minority never serves (G3)
                    self._resend_coordinator()
                return
            if not (everyone or timed_out):
                return
        elif not (everyone or timed_out):
            return
        self._become_leader()

    def _resend_coordinator(self) -> None:
        for peer in self.peers.values():
            if peer.node not in self.lead.offers_from:
                self._send(peer.node, Coordinator(self.term, self.priority))
        self.lead.gather.deadline = self.now + self.config.gather_timeout_s
        self.out.append(SetTimer("gather", self.lead.gather.deadline))

    def _adopt_term(self, term: Term) -> None:
        """Accept `term`; it is persisted (as the highest seen) before anything is said under it."""
        self.term = term
        self._see_term(term)

    # -- messages -------------------------------------------------------------------
    def _on_election(self, sender: str, msg: Election) -> None:
        """Bully step 2: answer a lower node; lead, or start our own election."""
        if self.stopping:
            return  # leaving: no ANSWER, so the lower node wins at once instead of waiting for us
        if self.peers[sender].rank > self.rank:
            return  # only lower nodes ask us; a higher one asking is stale
        self._send(sender, Answer(self.term))
        if self.role in (Role.LEADER, Role.GATHERING):
            self._send(sender, Coordinator(self.term, self.priority))
        elif self.role is Role.MEMBER and not self._leader_alive():
            self._start_election("a lower node asked")

    def _on_answer(self, sender: str, msg: Answer) -> None:
        """Bully step 3: a higher node is alive; wait for its COORDINATOR."""
        answerer = self.peers[sender]
        if answerer.rank > self.rank and (self.answered_by not in self.peers
                                          or answerer.rank > self.peers[self.answered_by].rank):
            self.answered_by = sender  # client requests go there while we wait (a bridge)
        if self.role is Role.ELECTING and self.peers[sender].rank > self.rank:
            self._become(Role.WAITING, Trigger.ANSWER)
            self.election_deadline = self.now + self.config.coordinator_timeout_s
            self.out.append(SetTimer("election", self.election_deadline))

    def _on_election_timer(self) -> None:
        if self.now < self.election_deadline:
            # Early: a driver's timer may fire a little before its time (asyncio runs
            # timers up to its clock resolution early; the simulator's clock rates
            # round). Not re-armed, it would leave us electing for good.
            if self.role in (Role.ELECTING, Role.WAITING):
                self.out.append(SetTimer("election", self.election_deadline))
            return
        if self.stopping:
            return  # a leaving node is a member already (NodeCore._leave)
        if self.role is Role.ELECTING:
            for peer in self.peers.values():
                if peer.rank > self.rank:
                    peer.alive = False  # no ANSWER: the higher nodes are gone
            self._win()
        elif self.role is Role.WAITING:
            self._start_election("no coordinator after an answer")

    def _on_gather_timer(self) -> None:
        if self.role is not Role.GATHERING:
            return
        if self.now < self.lead.gather.deadline:  # early (see _on_election_timer): again at the deadline
            self.out.append(SetTimer("gather", self.lead.gather.deadline))
            return
        self._maybe_finish_gather(timed_out=True)

    def _on_coordinator(self, sender: str, msg: Coordinator) -> None:
        if msg.term.node != sender:
            return
        if msg.term < self.term:
            self._send(sender, Reject(self.term))
        elif msg.term > self.term:
            self._accept_leader(sender, msg.term)
        elif sender == self.leader:
            self._send_offer(again=True)  # asked again: our offer may have been lost

    def _on_reject(self, sender: str, msg: Reject) -> None:
        """Fencing (G3): our term is stale, so we stop leading.

        If we outrank the newer term's leader we bully it at once (with a
        term above its own). Otherwise we wait for that leader to reach us
        (gossip introduces it); if it never does, the failure timeout starts
        an election as usual. Re-electing at once here would make nodes that
        do not yet know each other fence each other in turn.
        """
        if msg.term <= self.term or self.role not in (Role.LEADER, Role.GATHERING):
            return
        owner = self.peers.get(msg.term.node)
        if owner is not None and self.rank > owner.rank:
            self._start_election(f"fenced by term {msg.term}")
            return
        self._step_down(f"fenced by term {msg.term}")
        self._become(Role.MEMBER, Trigger.FENCED)
        self.leader = None
        self.leader_heard_at = self.now

    def _on_state_offer(self, sender: str, msg: StateOffer) -> None:
        """Step 4: merge whatever a node holds (facts are kept whatever their term).

        A big table comes in parts; the offer counts only once every part
        came, in order (a gap leaves the sender asked again, by heartbeat).
        """
        self._forget(msg.forgotten)
        for record in msg.records:
            self._merge(record)
        for task_id, attempt in msg.running:
            self._note_running(task_id, attempt)
        lead = self.lead
        if lead is None:
            return  # facts merged; nobody gathers
        if msg.digests and msg.offer_id:
            lead.peer_offers[sender] = (msg.offer_id, msg.digests)
        if msg.parts > 1 and not self._offer_complete(sender, msg):
            return
        if msg.term == self.term:
            lead.offers_from.add(sender)
            self._maybe_finish_gather()

    def _offer_complete(self, sender: str, msg: StateOffer) -> bool:
        parts = self.lead.offer_parts
        progress, whole = next_part(parts.pop(sender, None), msg.term, msg.part, msg.parts)
        if progress is not None:
            parts[sender] = progress
        return whole is True

    # -- accepting and leaving leadership -----------------------------------------------
    def _accept_leader(self, leader: str, term: Term) -> bool:
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
        owner = self.peers.get(leader)
        if (self.role is Role.LEADER and owner is not None
                and self.rank > owner.rank and not self.stopping):
            self._see_term(term)
            self._start_election(f"outranks {leader}, leader of newer term {term}")
            return False
        ours = self.peers.get(self.leader) if self.leader not in (None, leader) else None
        if (self.role is Role.MEMBER and owner is not None and ours is not None
                and ours.rank > owner.rank and self._leader_alive()):
            # Our leader is alive and outranks the claimant, who cannot hear it (a
            # bridge, or a node that was cut off): we stay. Obeying would fence our
            # leader, which bullies back, and the two would take turns for as long
            # as the partition lasts. Our leader bullies the claimant when they meet.
            self._see_term(term)
            return False
        if self.role in (Role.LEADER, Role.GATHERING):
            self._step_down(f"leader {leader} has newer term {term}")
        if self.role is not Role.MEMBER:
            self._become(Role.MEMBER, Trigger.COORDINATOR)
        self._adopt_term(term)
        if self.leader not in (None, self.id, leader):
            self._fail_forwarded(ErrorCode.LEADER_CHANGED, to=self.leader)
        self.leader = leader
        self.answered_by = None
        self.leader_heard_at = self.now
        self.applied_index = -1  # nothing of this term yet: a snapshot must come first
        self.caught_up = False
        self.out.append(Note("leader_accepted", {"node": self.id, "leader": leader, "term": str(term)}))
        self._send_offer()
        self._resend_finished(force=True)
        return True

    def _send_offer(self, again: bool = False) -> None:
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
        if self.leader is None or self.leader == self.id:
            return
        wait_s = self.config.failure_timeout_s if self.offer_sent_parts > 1 else self.config.heartbeat_interval_s
        if again and self.now - self.offer_sent_at < wait_s:
            return  # decided before cutting the table into parts again: that is the costly part
        theirs = self.leader_digests[1] if self.leader_digests and self.leader_digests[0] == self.term else b""
        records = list(self.table.values_unlike(theirs))
        self.offer_sent_at = self.now
        self.offer_sent_parts = max(1, -(-len(records) // self.config.max_batch))
        running = tuple((r.task_id, r.attempt(a)) for a, r in self.executing.items())
        offer_id = self.rng.getrandbits(62) + 1
        self.offer_ids.add(offer_id)
        term, mine, forgotten = self.term, self.table.digests(), tuple(self.forgotten)

        def parts():  # cut as they go, like a snapshot's (ReplicationMixin._send_snapshot)
            for n, chunk, last in stream_chunks(records, self.config.max_batch, self.config.max_chunk_bytes):
                yield StateOffer(term, tuple(chunk), running if last else (), forgotten if last else (),
                                 n, n + 1 if last else n + 2, mine if last else b"", offer_id if last else 0)
        self._drop_bulk("offer")  # an offer to an earlier leader is moot
        self._send_parts(self.leader, "offer", parts())

    def _maybe_take_over(self) -> None:
        """Step 6: a caught-up node that outranks its leader bullies it."""
        if self.role is not Role.MEMBER or self.leader is None or not self.caught_up:
            return
        leader = self.peers.get(self.leader)
        if leader is not None and self.rank > leader.rank:
            self._start_election("caught up and outranks the leader")

    def _see_term(self, term: Term) -> None:
        """Terms only grow (G3): the highest term seen is persisted as it grows, so a
        restarted node numbers its next term above every term it ever saw."""
        if term > self.max_term:
            self.max_term = term
            self.persist.append(PersistTerm(term))

    @property
    def rank(self) -> Rank:
        return Rank(self.priority, self.id)
