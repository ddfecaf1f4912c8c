"""Watches: a client subscribes to many tasks in one request and the node pushes each as it ends."""

from __future__ import annotations

from p2pq.core.events import ClientRequested, Push, Reply
from p2pq.core.messages import (AppendAck, Cancel, Forward, ForwardPush, ForwardReply, Heartbeat, Reject,
                                Submit, Watch, decode_client_request, to_wire)
from p2pq.core.tasks import TaskSpec
from p2pq.core.types import Term

from helpers import make_leader, node, of, recv, sends

SPEC = TaskSpec("builtin", "noop")


def leader_holding(*ids: str):
    """n3 leads n1 and n2 and holds the tasks `ids`, queued (no slots: nothing runs)."""
    n3 = node("n3", 3, {"n1": 1, "n2": 2})
    out = make_leader(n3)
    recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), 1.31)
    n3.handle(ClientRequested(100, Submit(tuple((i, SPEC) for i in ids))), 1.4)
    recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), 1.41)
    assert all(n3.table.get(i) is not None for i in ids) and out
    return n3


def test_a_watch_pushes_what_has_ended_then_each_task_as_it_ends_and_the_last_reply_ends_it():
    n3 = leader_holding("t1", "t2", "t3")
    n3.handle(ClientRequested(1, Cancel("t1")), 1.5)
    out = n3.handle(ClientRequested(2, Watch(("t1", "t2", "t3", "nope"))), 1.6)
    [first] = of(out, Push)
    assert [v["id"] for v in first.body["tasks"]] == ["t1"] and first.body["tasks"][0]["state"] == "cancelled"
    assert first.body["unknown"] == ["nope"] and of(out, Reply) == []
    out = n3.handle(ClientRequested(3, Cancel("t2")), 1.7)
    assert [(p.request_id, [v["id"] for v in p.body["tasks"]]) for p in of(out, Push)] == [(2, ["t2"])]
    assert of(out, Reply) == []  # the cancel's own answer waits for the follower's copy
    out = n3.handle(ClientRequested(4, Cancel("t3")), 1.8)
    final = [r for r in of(out, Reply) if r.request_id == 2]
    assert [[v["id"] for v in r.body["tasks"]] for r in final] == [["t3"]] and of(out, Push) == []
    assert n3.lead.watches == {} and n3.lead.waiters == {}


def test_a_watch_of_finished_tasks_is_answered_at_once():
    n3 = leader_holding("t1")
    n3.handle(ClientRequested(1, Cancel("t1")), 1.5)
    out = n3.handle(ClientRequested(2, Watch(("t1",))), 1.6)
    assert of(out, Push) == []
    [reply] = [r for r in of(out, Reply) if r.request_id == 2]
    assert reply.body["ok"] and [v["id"] for v in reply.body["tasks"]] == ["t1"]


def test_a_leader_that_steps_down_ends_each_watch_once_with_an_error_to_retry():
    n3 = leader_holding("t1", "t2")
    n3.handle(ClientRequested(2, Watch(("t1", "t2"))), 1.6)
    out = recv(n3, "n1", Reject(Term(7, "n2")), 2.0)
    ended = [r for r in of(out, Reply) if r.request_id == 2]
    assert [r.body["error"] for r in ended] == ["leader_changed"]


def test_a_member_passes_a_watch_on_and_carries_each_push_back_until_the_reply():
    n1 = node("n1", 1, {"n2": 2})
    recv(n1, "n2", Heartbeat(Term(1, "n2"), 2, (), (), want_offer=False), 0.1)
    out = n1.handle(ClientRequested(4, Watch(("t1", "t2"))), 0.2)
    assert sends(out, Forward, to="n2") == [Forward("n1", 4, Watch(("t1", "t2")))]
    out = recv(n1, "n2", ForwardPush(4, {"ok": True, "tasks": [{"id": "t1"}]}), 0.3)
    assert of(out, Push) == [Push(4, {"ok": True, "tasks": [{"id": "t1"}]})]
    out = recv(n1, "n2", ForwardReply(4, {"ok": True, "tasks": [{"id": "t2"}]}), 0.4)
    assert of(out, Reply) == [Reply(4, {"ok": True, "tasks": [{"id": "t2"}]})]
    assert of(recv(n1, "n2", ForwardPush(4, {"ok": True, "tasks": []}), 0.5), Push) == []  # it ended


def test_a_watch_is_checked_at_the_edge():
    assert decode_client_request(to_wire(Watch(("a", "b")))) == Watch(("a", "b"))
    for bad in ([1], "t1", ["a b"], ["x"] * 10_001):
        try:
            decode_client_request({"type": "watch", "ids": bad})
        except ValueError as exc:
            assert "ids" in str(exc)
        else:
            raise AssertionError(f"accepted {bad!r:.40}")


def test_cancel_queued_only_leaves_a_running_task_running():
    n3 = leader_holding("t1")
    n3.lead.assigned.clear()
    record = n3.table.get("t1")
    from dataclasses import replace

    from p2pq.core.tasks import Attempt
    n3.table.merge(replace(record, attempts=(Attempt("a1", "n1", 1.5),)))
    out = n3.handle(ClientRequested(5, Cancel("t1", queued_only=True)), 1.6)
    [reply] = [r for r in of(out, Reply) if r.request_id == 5]
    assert reply.body == {"ok": True, "id": "t1", "state": "running"}
    assert not n3.table.get("t1").cancelled


def test_tasks_ended_in_one_step_go_in_one_push_and_the_last_in_the_reply():
    n3 = leader_holding("t1", "t2", "t3", "t4")
    n3.handle(ClientRequested(2, Watch(("t1", "t2", "t3", "t4"))), 1.6)
    out = n3.handle_batch([ClientRequested(3, Cancel("t1")), ClientRequested(4, Cancel("t2"))], 1.7)
    assert [[v["id"] for v in p.body["tasks"]] for p in of(out, Push)] == [["t1", "t2"]]
    out = n3.handle_batch([ClientRequested(5, Cancel("t3")), ClientRequested(6, Cancel("t4"))], 1.8)
    assert of(out, Push) == []  # the last one ends the watch: its reply carries both
    assert [[v["id"] for v in r.body["tasks"]] for r in of(out, Reply) if r.request_id == 2] == [["t3", "t4"]]


def test_push_parts_are_bounded_in_bytes():
    from p2pq.core.state import WATCH_PUSH_BYTES, push_parts
    views = [{"id": f"t{i}", "result": {"value": "x" * 100_000}} for i in range(10)]
    parts = list(push_parts(views))
    assert [v for part in parts for v in part] == views and len(parts) > 1
    assert all(sum(len(v["result"]["value"]) for v in part) <= WATCH_PUSH_BYTES + 100_000 for part in parts)


def test_a_watch_whose_tasks_all_end_in_one_step_is_answered_in_parts_that_fit_a_frame(monkeypatch):
    import p2pq.core.state as state
    monkeypatch.setattr(state, "WATCH_PUSH_BYTES", 100)  # a few views per part
    ids = tuple(f"t{i}" for i in range(12))
    n3 = leader_holding(*ids)
    n3.handle(ClientRequested(2, Watch(ids)), 1.6)
    out = n3.handle_batch([ClientRequested(10 + i, Cancel(t)) for i, t in enumerate(ids)], 1.7)
    pushes = [p for p in of(out, Push) if p.request_id == 2]
    [final] = [r for r in of(out, Reply) if r.request_id == 2]
    parts = [[v["id"] for v in p.body["tasks"]] for p in pushes] + [[v["id"] for v in final.body["tasks"]]]
    assert len(parts) > 1 and [t for part in parts for t in part] == list(ids)
    assert out.actions.index(final) > max(out.actions.index(p) for p in pushes)  # the reply comes last
