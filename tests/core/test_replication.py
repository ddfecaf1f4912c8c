"""Replication and the task lifecycle, scripted on single nodes."""

from __future__ import annotations

from p2pq.core.events import (ClientRequested, Note, PersistRecords, Reply, RunTask, Send,
                              TaskCompleted, TimerFired)
from p2pq.core.messages import (Append, AppendAck, Dispatch, Finished, FinishedAck, Forward,
                                Heartbeat, HeartbeatAck, StateOffer, Submit)
from p2pq.core.tasks import LOST, SUCCEEDED, Attempt, TaskRecord, TaskSpec, TaskState
from p2pq.core.types import Config, Role, Term

from helpers import make_leader, node, of, recv, sends

SPEC = TaskSpec("builtin", "noop")


def leader_with_follower():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    out = make_leader(n3)
    snapshot = sends(out, Append, to="n2")
    assert [a.snapshot for a in snapshot] == [True]  # the highest other node follows
    assert sends(out, Append, to="n1") == []
    recv(n3, "n2", AppendAck(n3.term, snapshot[0].last_index, ok=True), 1.31)
    return n3


def test_no_acknowledgment_before_the_follower_acknowledged():
    n3 = leader_with_follower()
    out = n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    assert of(out, Reply) == []
    appended = sends(out, Append, to="n2")
    assert [r.task_id for a in appended for r in a.records] == ["t1"]
    # Persisted on the leader before the append goes out: the step's durable part.
    assert any(isinstance(c, PersistRecords) for c in out.durable)
    out = recv(n3, "n2", AppendAck(n3.term, appended[-1].last_index, ok=True), 2.01)
    (reply,) = of(out, Reply)
    assert reply.request_id == 1 and reply.body["ok"] and reply.body["ids"] == ["t1"]
    assert reply.body["replicated"] is True


def test_a_resubmitted_task_id_is_not_added_twice():
    n3 = leader_with_follower()
    n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    n3.handle(ClientRequested(2, Submit((("t1", SPEC),))), 2.1)
    assert len(n3.table) == 1


def test_a_follower_acknowledges_only_what_continues_its_log():
    n1 = node("n1", 1, {"n2": 2})
    term = Term(1, "n2")
    rec = TaskRecord("t1", SPEC, (1, 1), 0.5)
    out = recv(n1, "n2", Append(term, 0, 3, (rec,), snapshot=True), 1.0)
    assert sends(out, AppendAck) == [AppendAck(term, 3, ok=True)]
    out = recv(n1, "n2", Append(term, 5, 6, (), snapshot=False), 1.1)  # entries 4-5 lost
    assert sends(out, AppendAck) == [AppendAck(term, 3, ok=False)]
    out = recv(n1, "n2", Append(term, 3, 6, (rec,), snapshot=False), 1.2)
    assert sends(out, AppendAck) == [AppendAck(term, 6, ok=True)]


def test_a_follower_behind_catches_up_from_the_log_tail():
    n3 = leader_with_follower()
    for i in range(3):
        n3.handle(ClientRequested(i, Submit(((f"t{i}", SPEC),))), 2.0 + i / 10)
    acked = n3.followers["n2"].acked
    out = recv(n3, "n2", AppendAck(n3.term, acked, ok=False), 2.5)
    resent = sends(out, Append, to="n2")
    assert resent and not resent[0].snapshot and resent[0].prev_index == acked
    assert {r.task_id for a in resent for r in a.records} >= {"t0", "t1", "t2"}


def test_a_follower_that_lost_its_snapshot_gets_a_new_one():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    make_leader(n3)
    n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    out = recv(n3, "n2", AppendAck(n3.term, -1, ok=False), 2.1)  # it has nothing of this term
    (snap,) = sends(out, Append, to="n2")
    assert snap.snapshot and "t1" in {r.task_id for r in snap.records}


def test_a_new_follower_is_chosen_and_gets_a_snapshot_when_the_follower_dies():
    n3 = leader_with_follower()
    n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 2.5)
    out = n3.handle(TimerFired("tick"), 3.0)  # n2 silent since 1.31 > 1 s
    assert list(n3.followers) == ["n1"]
    (snap,) = sends(out, Append, to="n1")
    assert snap.snapshot and [r.task_id for r in snap.records] == ["t1"]
    out = recv(n3, "n1", AppendAck(n3.term, snap.last_index, ok=True), 3.01)
    assert of(out, Reply)[0].body["ok"]  # acknowledged once the new copy exists


def test_a_new_leader_merges_both_sides_of_a_healed_partition():
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    n3.handle(TimerFired("tick"), 1.2)
    left = TaskRecord("a", SPEC, (1, 1), 0.5, (Attempt("1.n1.1", "n1", 0.6, 0.7, SUCCEEDED),))
    right = TaskRecord("b", SPEC, (2, 1), 0.8)
    recv(n3, "n1", StateOffer(n3.term, (left,), ()), 1.21)
    recv(n3, "n2", StateOffer(n3.term, (right, TaskRecord("a", SPEC, (1, 1), 0.5)), ()), 1.22)
    assert n3.role is Role.LEADER
    assert n3.table.get("a").state is TaskState.SUCCEEDED  # terminal beats queued
    assert n3.table.get("b") is not None


def test_a_lone_leader_refuses_to_acknowledge_what_nobody_else_holds():
    n3 = leader_with_follower()
    out = n3.handle(TimerFired("tick"), 3.0)  # n1 and n2 silent: both dead
    assert not n3.followers
    out = n3.handle(ClientRequested(9, Submit((("t9", SPEC),))), 3.1)
    assert of(out, Reply)[0].body["error"] == "unreplicated"


def test_a_cluster_of_one_acknowledges_unreplicated():
    solo = node("n1", 1, {})
    solo.handle(TimerFired("tick"), 1.2)
    assert solo.role is Role.LEADER
    out = solo.handle(ClientRequested(1, Submit((("t1", SPEC),))), 1.3)
    assert of(out, Reply)[0].body == {"ok": True, "ids": ["t1"], "replicated": False,
                                      "leader": "n1", "term": "1@n1"}


def test_quorum_mode_minority_refuses_with_a_clear_error():
    n1 = node("n1", 1, {"n2": 2, "n3": 3, "n4": 4, "n5": 5}, Config(quorum=5))
    out = n1.handle(ClientRequested(1, Submit((("t1", SPEC),))), 0.5)
    body = of(out, Reply)[0].body
    assert body["error"] == "no_leader"
    for t in (1.2, 1.4, 1.6, 3.0):
        n1.handle(TimerFired("tick"), t)
        n1.handle(TimerFired("election"), t)
        n1.handle(TimerFired("gather"), t)
    assert n1.role is not Role.LEADER  # it never hears from a majority
    out = n1.handle(ClientRequested(2, Submit((("t1", SPEC),))), 3.1)
    assert of(out, Reply)[0].body["error"] in ("no_leader", "no_quorum")


def test_a_member_forwards_submits_to_the_leader_and_relays_the_answer():
    from p2pq.core.messages import ForwardReply
    n1 = node("n1", 1, {"n2": 2})
    recv(n1, "n2", Heartbeat(Term(1, "n2"), 2, (), (), want_offer=False), 0.1)
    out = n1.handle(ClientRequested(4, Submit((("t1", SPEC),))), 0.2)
    assert sends(out, Forward, to="n2") == [Forward("n1", 4, Submit((("t1", SPEC),)))]
    out = recv(n1, "n2", ForwardReply(4, {"ok": True, "ids": ["t1"]}), 0.3)
    assert of(out, Reply) == [Reply(4, {"ok": True, "ids": ["t1"]})]


def test_dispatch_run_finish_and_ack_after_replication():
    n3 = leader_with_follower()
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 1.9)
    recv(n3, "n2", HeartbeatAck(n3.term, 1, ()), 1.9)
    out = n3.handle(ClientRequested(1, Submit((("t1", TaskSpec("builtin", "noop", priority=1)),))), 2.0)
    runs = of(out, RunTask)
    dispatches = sends(out, Dispatch)
    assert len(runs) + len(dispatches) == 1  # one free slot takes it
    if runs:
        attempt_id = runs[0].attempt_id
        out = n3.handle(TaskCompleted("t1", attempt_id, SUCCEEDED, {"value": 1}, 2.1), 2.1)
    else:
        target = next(c.to for c in out if isinstance(c, Send) and isinstance(c.message, Dispatch))
        record = dispatches[0].record
        attempt = record.attempt(dispatches[0].attempt_id)
        done = record.with_attempt(Attempt(attempt.attempt_id, target, attempt.started_at, 2.1, SUCCEEDED))
        out = recv(n3, target, Finished(n3.term, done), 2.1)
        assert sends(out, FinishedAck) == []  # not before the follower has the result
    assert n3.table.get("t1").state is TaskState.SUCCEEDED
    out = recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), 2.2)
    if not runs:
        assert sends(out, FinishedAck)


def test_tasks_of_a_dead_node_go_back_to_the_queue():
    n3 = leader_with_follower()
    n3.config = Config(slots=0)  # only peers run tasks here
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 1.9)
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.9)
    out = n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    (dispatch,) = sends(out, Dispatch, to="n1")
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 2.9)
    out = n3.handle(TimerFired("tick"), 3.0)  # n1 silent since 1.9
    record = n3.table.get("t1")
    assert [a.outcome for a in record.attempts] == [LOST]
    assert any(isinstance(c, Note) and c.kind == "task_requeued" for c in out)
    assert record.state is TaskState.QUEUED


def test_a_lost_dispatch_is_noticed_from_heartbeat_acks():
    n3 = leader_with_follower()
    n3.config = Config(slots=0)
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 1.9)
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.9)
    n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 2.0)
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 2.5)   # within the grace: still trusted
    assert n3.table.get("t1").state is TaskState.RUNNING
    recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 3.1)   # still not listed: lost
    assert n3.table.get("t1").state in (TaskState.QUEUED, TaskState.RUNNING)
    assert n3.table.get("t1").attempts[0].outcome == LOST


def test_dispatch_order_follows_priority_then_submit_order():
    n3 = leader_with_follower()
    n3.config = Config(slots=0)
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.9)
    recv(n3, "n1", HeartbeatAck(n3.term, 0, ()), 1.9)
    tasks = (("low", TaskSpec("builtin", "noop", priority=9)), ("a", TaskSpec("builtin", "noop", priority=1)),
             ("b", TaskSpec("builtin", "noop", priority=1)), ("mid", TaskSpec("builtin", "noop", priority=5)))
    n3.handle(ClientRequested(1, Submit(tasks)), 2.0)
    order = []
    out = recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 2.1)  # n1 offers its one slot
    for i in range(4):
        (d,) = sends(out, Dispatch, to="n1")  # one slot: one task at a time
        order.append(d.record.task_id)
        rec = d.record.with_attempt(Attempt(d.attempt_id, "n1", 2.1, 2.15, SUCCEEDED))
        out = recv(n3, "n1", Finished(n3.term, rec), 2.2 + i / 10)
    assert order == ["a", "b", "mid", "low"]
