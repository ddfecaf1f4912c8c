"""The bully rules with terms, one scripted node at a time."""

from __future__ import annotations

import pytest

from p2pq.core.events import Note, PersistTerm, Send, SetTimer, TimerFired
from p2pq.core.messages import (Answer, Append, AppendAck, Coordinator, Election, Gossip, Heartbeat, Join,
                                HeartbeatAck, Reject, StateOffer)
from p2pq.core.types import IllegalTransition, Role, Term, Trigger

from helpers import make_leader, node, of, recv, sends


def test_nobody_elects_before_the_failure_timeout():
    n = node("n1", 1, {"n2": 2})
    out = n.handle(TimerFired("tick"), 0.4)
    assert sends(out) == []
    assert n.role is Role.MEMBER


def test_higher_node_answers_a_lower_one_and_starts_its_own_election():
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    out = recv(n2, "n1", Election(Term(0, ""), 1), 0.1)
    assert sends(out, Answer, to="n1") == [Answer(Term(0, ""))]
    # Bully step 2: no live leader, so n2 asks the nodes above it.
    assert sends(out, Election, to="n3") == [Election(Term(0, ""), 2)]
    assert n2.role is Role.ELECTING


def test_a_node_with_a_live_leader_answers_but_does_not_disturb_it():
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    recv(n2, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    out = recv(n2, "n1", Election(Term(1, "n3"), 1), 0.2)
    assert sends(out, Answer, to="n1")
    assert sends(out, Election) == []
    assert n2.role is Role.MEMBER


def test_no_answer_makes_the_candidate_leader_with_a_new_persisted_term():
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    out = n2.handle(TimerFired("tick"), 1.2)
    assert sends(out, Election, to="n3")
    assert SetTimer("election", pytest.approx(1.4)) in out
    out = n2.handle(TimerFired("election"), 1.4)
    term = Term(1, "n2")
    assert n2.role is Role.GATHERING and n2.term == term
    # The term is written before anything is said under it: the step's durable part.
    assert PersistTerm(term) in out.durable and not any(isinstance(c, Send) for c in out.durable)
    assert [(c.term, c.priority) for c in sends(out, Coordinator, to="n1")] == [(term, 2)]
    assert [(c.term, c.priority) for c in sends(out, Coordinator, to="n3")] == [(term, 2)]


def test_an_answer_makes_the_candidate_wait_for_the_coordinator_then_retry():
    n1 = node("n1", 1, {"n2": 2})
    n1.handle(TimerFired("tick"), 1.2)
    recv(n1, "n2", Answer(Term(0, "")), 1.25)
    assert n1.role is Role.WAITING
    out = n1.handle(TimerFired("election"), 1.25 + 1.0)
    assert n1.role is Role.ELECTING
    assert sends(out, Election, to="n2")


def test_the_winner_serves_only_after_gathering_everyones_state():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    n3.handle(TimerFired("tick"), 1.2)
    assert n3.role is Role.GATHERING
    recv(n3, "n1", StateOffer(n3.term, (), ()), 1.21)
    assert n3.role is Role.GATHERING  # n2 has not answered yet
    out = recv(n3, "n2", StateOffer(n3.term, (), ()), 1.22)
    assert n3.role is Role.LEADER
    assert [c.kind for c in of(out, Note)].count("leader_elected") == 1


def test_gathering_ends_at_the_timeout_in_available_mode():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    n3.handle(TimerFired("tick"), 1.2)
    n3.handle(TimerFired("gather"), 1.2 + n3.config.gather_timeout_s)
    assert n3.role is Role.LEADER


def test_a_coordinator_of_a_lower_term_is_rejected():
    n1 = node("n1", 1, {"n2": 2, "n3": 3})
    recv(n1, "n3", Coordinator(Term(5, "n3"), 3), 0.1)
    out = recv(n1, "n2", Coordinator(Term(4, "n2"), 2), 0.2)
    assert sends(out, Reject, to="n2") == [Reject(Term(5, "n3"))]
    assert n1.term == Term(5, "n3") and n1.leader == "n3"


def test_messages_of_a_deposed_leader_are_fenced():
    n1 = node("n1", 1, {"n2": 2, "n3": 3})
    recv(n1, "n3", Coordinator(Term(5, "n3"), 3), 0.1)
    out = recv(n1, "n2", Append(Term(4, "n2"), 0, 1, (), snapshot=True), 0.2)
    assert sends(out, Reject, to="n2") == [Reject(Term(5, "n3"))]
    assert sends(out, AppendAck) == []


def test_a_fenced_leader_steps_down_and_re_elects_above_the_newer_term():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(n3)
    out = recv(n3, "n1", Reject(Term(7, "n2")), 2.0)
    assert any(isinstance(c, Note) and c.kind == "stepped_down" for c in out)
    # n3 is the highest node, so it wins again at once, above term 7.
    assert n3.term == Term(8, "n3")
    assert [(c.term, c.priority) for c in sends(out, Coordinator, to="n2")] == [(Term(8, "n3"), 3)]


def test_a_restarted_higher_node_catches_up_before_it_takes_over():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    out = recv(n3, "n2", Heartbeat(Term(2, "n2"), 2, (), ("n3",), want_offer=True), 0.1)
    assert n3.leader == "n2" and n3.role is Role.MEMBER
    assert sends(out, Election) == [] and sends(out, Coordinator) == []
    assert sends(out, StateOffer, to="n2") and sends(out, HeartbeatAck, to="n2")
    out = recv(n3, "n2", Append(Term(2, "n2"), 0, 4, (), snapshot=True), 0.2)
    assert sends(out, AppendAck, to="n2") == [AppendAck(Term(2, "n2"), 4, ok=True)]
    # Caught up, it outranks its leader: now it bullies, with a higher term.
    assert n3.role is Role.GATHERING and n3.term == Term(3, "n3")
    assert [(c.term, c.priority) for c in sends(out, Coordinator, to="n2")] == [(Term(3, "n3"), 3)]


def test_a_leader_that_leaves_is_replaced_without_waiting_for_a_timeout():
    from p2pq.core.messages import Leave
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    recv(n2, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    out = recv(n2, "n3", Leave(), 0.2)
    assert n2.role is Role.GATHERING and n2.term == Term(2, "n2")
    assert sends(out, Coordinator, to="n1")


def test_an_illegal_role_transition_raises():
    n1 = node("n1", 1, {"n2": 2})
    with pytest.raises(IllegalTransition, match=r"invalid transition \[member -> leader\] on gathered"):
        n1.become(Role.LEADER, Trigger.GATHERED)


def test_a_stranger_that_joins_is_told_whom_we_know_and_joins_them():
    # The seed case without multicast: n3 and n4 each know only the seed n1.
    seed = node("n1", 1, {"n3": 3})
    out = recv(seed, "n4", Join(4, None, 2), 0.1)
    assert [m.node for g in sends(out, Gossip, to="n4") for m in g.members] == ["n3"]
    # n4 learns n3 from the gossip and introduces itself, leader or not.
    n4 = node("n4", 4, {"n1": 1})
    out = recv(n4, "n1", Gossip(tuple(m for g in sends(out, Gossip) for m in g.members)), 0.2)
    assert sends(out, Join, to="n3") == [Join(4, None, n4.config.slots)]
    assert "n3" in n4.peers


def test_a_known_peer_that_joins_again_gets_no_gossip():
    seed = node("n1", 1, {"n3": 3, "n4": 4})
    assert sends(recv(seed, "n4", Join(4, None, 2), 0.1), Gossip) == []


def test_a_leaving_leader_steps_down_and_never_stands_for_election_again():
    """Issue 13: a node stopped with Ctrl-C re-elected itself and ran a task twice."""
    from p2pq.core.events import RunTask, ShutdownRequested
    from p2pq.core.messages import Dispatch, Leave
    from p2pq.core.tasks import Attempt, TaskRecord, TaskSpec
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(n3)
    out = n3.handle(ShutdownRequested(), 2.0)
    assert n3.role is Role.MEMBER and n3.leader is None
    assert sorted(c.to for c in out if isinstance(c, Send) and isinstance(c.message, Leave)) == ["n1", "n2"]
    # n2 takes over; a lower node's election and every timer leave n3 a member that answers nothing
    out = recv(n3, "n1", Election(Term(1, "n3"), 1), 2.1)
    assert sends(out, Answer) == [] and sends(out, Election) == [] and n3.role is Role.MEMBER
    for t in (2.5, 3.5, 4.5):
        out = [*n3.handle(TimerFired("tick"), t), *n3.handle(TimerFired("election"), t)]
        assert sends(out, Election) == [] and sends(out, Coordinator) == [] and n3.role is Role.MEMBER
    recv(n3, "n2", Coordinator(Term(2, "n2"), 2), 4.6)
    record = TaskRecord("t1", TaskSpec("builtin", "noop"), (2, 1), 4.0, (Attempt("2.n2.1", "n3", 4.6),))
    out = recv(n3, "n2", Dispatch(Term(2, "n2"), record, "2.n2.1"), 4.7)
    assert of(out, RunTask) == []  # takes no new work


def test_a_leaving_candidate_gives_up_its_election():
    from p2pq.core.events import ShutdownRequested
    n1 = node("n1", 1, {"n2": 2})
    n1.handle(TimerFired("tick"), 1.5)
    assert n1.role is Role.ELECTING
    n1.handle(ShutdownRequested(), 1.55)
    out = n1.handle(TimerFired("election"), 2.0)
    assert n1.role is Role.MEMBER and sends(out, Coordinator) == []


def test_a_long_gather_keeps_its_members_from_timing_out_but_a_quorum_minority_stays_quiet():
    """Issue 13: merging big offers made a gather outlast the failure timeout; the lowest node took over."""
    from dataclasses import replace as _replace

    from p2pq.core.types import Config
    n3 = node("n3", 3, {"n1": 1, "n2": 2}, _replace(Config(), gather_timeout_s=30.0))
    (coordinator,) = sends(n3.handle(TimerFired("tick"), 1.3), Coordinator, to="n1")
    assert n3.role is Role.GATHERING
    member = node("n1", 1, {"n2": 2, "n3": 3})
    recv(member, "n3", coordinator, 1.31)
    (beat,) = sends(n3.handle(TimerFired("tick"), 2.0), Heartbeat, to="n1")
    recv(member, "n3", beat, 2.01)
    member.handle(TimerFired("tick"), 2.5)  # 1.2 s after the coordinator, 0.5 s after the heartbeat
    assert member.role is Role.MEMBER and member.leader == "n3"

    minority = node("n3", 3, {"n1": 1, "n2": 2}, _replace(Config(), quorum=5, gather_timeout_s=30.0))
    minority.handle(TimerFired("tick"), 1.3)
    assert not sends(minority.handle(TimerFired("tick"), 2.0), Heartbeat)


# -- a refused dial: the leader's process is gone ----------------------------------


def test_a_member_refused_by_its_leader_elects_after_two_heartbeats_not_the_failure_timeout():
    from p2pq.core.events import PeerRefused
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    recv(n2, "n3", Coordinator(Term(1, "n3"), 3), 0.1)  # heard at 0.1
    n2.handle(PeerRefused("n3"), 0.15)  # its port closed: refused, but heard 50 ms ago
    assert n2.role is Role.MEMBER and n2.leader == "n3"
    n2.handle(TimerFired("tick"), 0.4)
    assert n2.role is Role.MEMBER  # 0.3 s of silence: not yet
    out = n2.handle(TimerFired("tick"), 0.55)
    assert n2.role is Role.GATHERING and n2.term == Term(2, "n2")  # 0.45 s, well before 1.1 s
    assert sends(out, Coordinator, to="n1")


def test_a_refusal_after_the_refused_timeout_of_silence_elects_at_once():
    from p2pq.core.events import PeerRefused
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    recv(n2, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    n2.handle(PeerRefused("n3"), 0.6)  # silent 0.5 s and refused: no tick needed
    assert n2.role is Role.GATHERING


def test_a_refusal_from_a_leader_that_still_speaks_changes_nothing():
    # A one-way firewall rule may refuse our dials while its heartbeats reach us.
    from p2pq.core.events import PeerRefused
    n2 = node("n2", 2, {"n1": 1, "n3": 3})
    recv(n2, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    now = 0.1
    while now < 3.0:
        n2.handle(PeerRefused("n3"), now + 0.05)
        now += 0.2
        recv(n2, "n3", Heartbeat(Term(1, "n3"), 3, (), (), False), now)
        n2.handle(TimerFired("tick"), now + 0.01)
        assert n2.role is Role.MEMBER and n2.leader == "n3"


def test_a_leader_reclaims_a_member_that_refuses_it_after_two_heartbeats():
    from p2pq.core.events import PeerRefused
    leader = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(leader)
    for peer in ("n1", "n2"):
        recv(leader, peer, HeartbeatAck(leader.term, 1, 0), 1.4)
    leader.handle(PeerRefused("n1"), 1.45)
    assert leader.peers["n1"].alive
    out = leader.handle(TimerFired("tick"), 1.9)
    recv(leader, "n2", HeartbeatAck(leader.term, 1, 0), 1.9)
    assert not leader.peers["n1"].alive and leader.peers["n2"].alive
    assert [n.detail for n in of(out, Note) if n.kind == "node_dead"] == [{"node": "n1", "why": "stopped answering"}]


# -- a lower node with a newer term: bullied, not obeyed ----------------------------


def test_a_leader_bullies_a_lower_node_of_a_newer_term_instead_of_obeying_it():
    # n1 was cut off, elected itself (term 5) and is back: n3 outranks it.
    leader = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(leader)
    assert leader.term == Term(1, "n3")
    out = recv(leader, "n1", Coordinator(Term(5, "n1"), 1), 2.0)
    assert leader.role is Role.GATHERING and leader.term == Term(6, "n3")
    assert [c.term for c in sends(out, Coordinator, to="n1")] == [Term(6, "n3")]
    assert not [n for n in of(out, Note) if n.kind == "leader_accepted"]


def test_a_leader_fenced_by_a_lower_nodes_heartbeat_bullies_it_and_ignores_the_heartbeat():
    leader = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(leader)
    out = recv(leader, "n1", Heartbeat(Term(5, "n1"), 1, (), (), True, b""), 2.0)
    assert leader.role is Role.GATHERING and leader.term == Term(6, "n3")
    assert not sends(out, HeartbeatAck) and not sends(out, StateOffer)  # not n1's member


def test_a_member_stays_with_a_live_higher_leader_and_obeys_the_claimant_once_it_is_silent():
    # n1 cannot hear n3 (a bridge through n2): it elected itself. n2 still hears n3.
    member = node("n2", 2, {"n1": 1, "n3": 3})
    recv(member, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    out = recv(member, "n1", Coordinator(Term(5, "n1"), 1), 0.2)
    assert member.leader == "n3" and member.term == Term(1, "n3")  # n3 is not fenced through us
    assert not sends(out, StateOffer) and member.max_term == Term(5, "n1")
    recv(member, "n1", Heartbeat(Term(5, "n1"), 1, (), (), True, b""), 0.4)
    assert member.leader == "n3"
    out = recv(member, "n1", Heartbeat(Term(5, "n1"), 1, (), (), True, b""), 1.3)  # n3 silent 1.2 s
    assert member.leader == "n1" and member.term == Term(5, "n1") and sends(out, StateOffer, to="n1")
    higher = node("n2", 2, {"n1": 1, "n3": 3, "n4": 4})
    recv(higher, "n3", Coordinator(Term(1, "n3"), 3), 0.1)
    recv(higher, "n4", Coordinator(Term(2, "n4"), 4), 0.2)
    assert higher.leader == "n4"  # a claimant above our leader is obeyed at once
    lower = node("n2", 2, {"n1": 1, "n3": 3})
    lower.handle(TimerFired("tick"), 1.3)
    assert lower.role is Role.ELECTING
    recv(lower, "n3", Coordinator(Term(7, "n3"), 3), 1.4)
    assert lower.role is Role.MEMBER and lower.leader == "n3"


# -- a bridge: a node that hears no leader, through one that does -------------------------


def test_a_node_cut_off_from_the_leader_has_its_clients_requests_relayed_by_the_node_that_answered():
    from p2pq.core.events import ClientRequested, Reply
    from p2pq.core.messages import Forward, ForwardReply, Submit
    from p2pq.core.tasks import TaskSpec
    # n2 reaches n3 but not the leader n5: its election gets n3's ANSWER and no COORDINATOR.
    n2 = node("n2", 2, {"n1": 1, "n3": 3, "n5": 5})
    n2.peers["n5"].alive = False
    n2.handle(TimerFired("tick"), 1.3)
    recv(n2, "n3", Answer(Term(1, "n5")), 1.35)
    assert n2.role is Role.WAITING
    submit = Submit((("t1", TaskSpec("builtin", "noop")),))
    out = n2.handle(ClientRequested(7, submit), 1.4)
    assert sends(out, Forward, to="n3") == [Forward("n2", 7, submit)]
    # n3 obeys n5 and relays under an id of its own.
    n3 = node("n3", 3, {"n1": 1, "n2": 2, "n5": 5})
    recv(n3, "n5", Coordinator(Term(1, "n5"), 5), 1.0)
    out = recv(n3, "n2", Forward("n2", 7, submit), 1.41)
    (relayed,) = sends(out, Forward, to="n5")
    assert relayed.origin == "n3" and relayed.request_id < 0 and relayed.request == submit
    body = {"ok": True, "ids": ["t1"]}
    out = recv(n3, "n5", ForwardReply(relayed.request_id, body), 1.42)
    assert sends(out, ForwardReply, to="n2") == [ForwardReply(7, body)] and not n3.relays
    out = recv(n2, "n3", ForwardReply(7, body), 1.43)
    assert of(out, Reply) == [Reply(7, body)]


def test_a_relay_whose_leader_changes_answers_its_asker_with_an_error_to_retry():
    from p2pq.core.messages import Forward, ForwardReply, Submit
    from p2pq.core.tasks import TaskSpec
    n3 = node("n3", 3, {"n1": 1, "n2": 2, "n5": 5})
    recv(n3, "n5", Coordinator(Term(1, "n5"), 5), 1.0)
    submit = Submit((("t1", TaskSpec("builtin", "noop")),))
    recv(n3, "n2", Forward("n2", 9, submit), 1.1)
    out = recv(n3, "n5", Coordinator(Term(2, "n5"), 5), 1.2)  # same leader, new term: kept
    assert not sends(out, ForwardReply)
    from p2pq.core.messages import Leave
    out = recv(n3, "n5", Leave(), 1.3)
    (failed,) = sends(out, ForwardReply, to="n2")
    assert failed.request_id == 9 and failed.body["error"] == "leader_changed"


def test_an_election_or_gather_timer_that_fires_early_is_armed_again_not_dropped():
    # asyncio runs a timer up to its clock resolution early; a dropped timer left a
    # candidate electing, or a quorum gatherer gathering, for good.
    from p2pq.core.types import Config
    n1 = node("n1", 1, {"n2": 2})
    n1.handle(TimerFired("tick"), 1.3)
    assert n1.role is Role.ELECTING
    out = n1.handle(TimerFired("election"), n1.election_deadline - 1e-9)
    assert SetTimer("election", n1.election_deadline) in out and n1.role is Role.ELECTING
    n1.handle(TimerFired("election"), n1.election_deadline)
    assert n1.role is Role.LEADER and n1.term.node == "n1"  # n2 never answered
    quorum = node("n3", 3, {"n1": 1, "n2": 2}, Config(quorum=3))
    quorum.handle(TimerFired("tick"), 1.3)
    assert quorum.role is Role.GATHERING
    deadline = quorum.lead.gather.deadline
    out = quorum.handle(TimerFired("gather"), deadline - 1e-9)
    assert SetTimer("gather", deadline) in out and not sends(out, Coordinator)
    out = quorum.handle(TimerFired("gather"), deadline)
    assert sends(out, Coordinator, to="n1")  # asked again: a minority keeps asking
