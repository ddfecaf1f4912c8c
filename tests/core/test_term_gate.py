"""The term gate: every peer message's term is judged in one place, by a policy per type (G3)."""

from __future__ import annotations

import pytest

from helpers import node, of, recv, sends
from p2pq.core.events import PersistTerm
from p2pq.core.messages import (CLIENT_REQUESTS, MESSAGE_TYPES, Answer, Append, AppendAck, CancelRun, Coordinator,
                                Dispatch, Election, Finished, FinishedAck, Heartbeat, HeartbeatAck, Reject,
                                StateOffer)
from p2pq.core.node import ANY, OBEYED, RAISES, TERM_POLICY
from p2pq.core.tasks import TaskRecord, TaskSpec
from p2pq.core.types import Role, Term

RECORD = TaskRecord("t1", TaskSpec("builtin", "noop"), (1, 1), 0.0)
ACCEPTED = Term(5, "n2")  # n1 follows n2 under this term
LOWER, HIGHER = Term(4, "n2"), Term(6, "n2")


def example(cls, term: Term):
    return {
        Heartbeat: lambda: Heartbeat(term, 2, (), (), False),
        Append: lambda: Append(term, -1, 0, (), snapshot=True),
        Dispatch: lambda: Dispatch(term, RECORD, "0.n1.1"),
        CancelRun: lambda: CancelRun(term, "t1", "0.n1.1"),
        FinishedAck: lambda: FinishedAck(term, ("0.n1.1",)),
        Election: lambda: Election(term, 2),
        Answer: lambda: Answer(term),
        Coordinator: lambda: Coordinator(term, 2),
        Reject: lambda: Reject(term),
        HeartbeatAck: lambda: HeartbeatAck(term, 1, ()),
        AppendAck: lambda: AppendAck(term, 0, True),
        StateOffer: lambda: StateOffer(term, (), ()),
        Finished: lambda: Finished(term, RECORD),
    }[cls]()


def follower():
    n1 = node("n1", 1, {"n2": 2})
    recv(n1, "n2", Coordinator(ACCEPTED, 2), 0.1)
    assert n1.term == ACCEPTED and n1.leader == "n2" and n1.max_term == ACCEPTED
    return n1


def test_every_peer_message_type_has_a_term_policy():
    peer_types = set(MESSAGE_TYPES.values()) - set(CLIENT_REQUESTS)
    assert set(TERM_POLICY) == peer_types


@pytest.mark.parametrize("cls", [c for c, p in TERM_POLICY.items() if p is OBEYED])
def test_a_leader_message_is_obeyed_only_under_the_accepted_term(cls):
    n1 = follower()
    out = recv(n1, "n2", example(cls, LOWER), 0.2)
    assert sends(out, Reject, to="n2") == [Reject(ACCEPTED)]  # older: rejected, not handled
    assert n1.term == ACCEPTED and not of(out, PersistTerm)
    out = recv(n1, "n2", example(cls, ACCEPTED), 0.3)
    assert not sends(out, Reject) and n1.term == ACCEPTED and n1.leader == "n2"
    out = recv(n1, "n2", example(cls, HIGHER), 0.4)  # newer, from its owner: a new leadership
    assert n1.term == HIGHER and n1.leader == "n2" and of(out, PersistTerm) == [PersistTerm(HIGHER)]


@pytest.mark.parametrize("cls", [c for c, p in TERM_POLICY.items() if p is RAISES])
def test_an_election_message_raises_the_highest_term_seen(cls):
    for term, grows in ((LOWER, False), (ACCEPTED, False), (HIGHER, True)):
        n1 = follower()
        out = recv(n1, "n2", example(cls, term), 0.2)
        assert n1.max_term == max(ACCEPTED, term)
        assert (PersistTerm(HIGHER) in of(out, PersistTerm)) is grows  # persisted as it grows


@pytest.mark.parametrize("cls", [c for c, p in TERM_POLICY.items() if p is ANY and "term" in c.__slots__])
def test_other_messages_leave_the_term_to_their_handler(cls):
    for term in (LOWER, ACCEPTED, HIGHER):
        n1 = follower()
        out = recv(n1, "n2", example(cls, term), 0.2)
        assert n1.max_term == ACCEPTED and n1.term == ACCEPTED and n1.role is Role.MEMBER
        assert not of(out, PersistTerm) and not sends(out, Reject)


def test_terms_and_attempt_ids_parse_back_from_their_text():
    from p2pq.core.types import ZERO_TERM, attempt_id, attempt_term
    for term in (Term(7, "n3"), Term(12, "lab-pc.local-7470-a1b2c3"), ZERO_TERM):
        assert Term.parse(str(term)) == term
    assert attempt_term(attempt_id(Term(7, "lab.pc-7470"), 12)) == Term(7, "lab.pc-7470")  # dots in node ids
    for bad in ("", "@n3", "x@n3", "7@", "-1@n3"):
        with pytest.raises(ValueError):
            Term.parse(bad)
    for bad in ("7.n3", "x.n3.1", "7..1", "7.n3.x"):
        with pytest.raises(ValueError):
            attempt_term(bad)


def test_a_client_request_sent_as_a_peer_message_is_ignored_not_an_error():
    from p2pq.core.events import Note
    from p2pq.core.messages import Query, Submit
    n1 = follower()
    for msg in (Submit((("t9", RECORD.spec),)), Query("stats")):
        out = recv(n1, "n2", msg, 0.2)
        assert not [n for n in of(out, Note) if n.kind == "internal_error"] and "t9" not in n1.table
