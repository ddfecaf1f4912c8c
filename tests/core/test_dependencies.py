"""Tasks that run after others: blocked until their dependencies succeed, failed if one fails."""

from __future__ import annotations

from p2pq.core.events import ClientRequested, Reply, RunTask, TaskCompleted
from p2pq.core.messages import (AppendAck, Cancel, Submit, decode_client_request, record_from_wire,
                                record_to_wire, to_wire)
from p2pq.core.tasks import FAILED, SUCCEEDED, TaskSpec, TaskState
from p2pq.core.types import Config

from helpers import make_leader, node, of, recv


def spec(*after: str, priority: int = 5) -> TaskSpec:
    return TaskSpec("builtin", "noop", priority=priority, after=tuple(after))


def leader(slots: int = 0):
    """n3 leads n1 and n2; with slots=0 nothing runs unless the test says so."""
    n3 = node("n3", 3, {"n1": 1, "n2": 2}, Config(slots=slots))
    make_leader(n3)
    recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), 1.31)
    return n3


def submit(n3, tasks, request_id=1, now=1.5):
    out = list(n3.handle(ClientRequested(request_id, Submit(tuple(tasks))), now))
    out += recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), now + 0.01)
    return [r.body for r in of(out, Reply) if r.request_id == request_id]


def finish(n3, task_id, outcome, now):
    """Run `task_id` on n3 itself (it is dispatched there) and end it with `outcome`."""
    attempt = next(a for a in n3.table.get(task_id).attempts if a.running)
    return list(n3.handle(TaskCompleted(task_id, attempt.attempt_id, outcome,
                                        {"status": outcome, "value": 1}, now), now))


def state(n3, task_id):
    return n3.table.get(task_id).state


def test_a_task_is_blocked_until_its_dependencies_succeed_then_runs_in_order():
    n3 = leader(slots=1)
    [ack] = submit(n3, [("a", spec()), ("b", spec("a")), ("c", spec("a", "b"))])
    assert ack["ok"] and ack["ids"] == ["a", "b", "c"]
    states = (state(n3, "a"), state(n3, "b"), state(n3, "c"))
    assert states == (TaskState.RUNNING, TaskState.BLOCKED, TaskState.BLOCKED)
    out = finish(n3, "a", SUCCEEDED, 2.0)
    assert [r.task_id for r in of(out, RunTask)] == ["b"] and state(n3, "c") is TaskState.BLOCKED
    assert n3.table.get("b").released
    out = finish(n3, "b", SUCCEEDED, 2.1)
    assert [r.task_id for r in of(out, RunTask)] == ["c"]


def test_a_failed_or_cancelled_dependency_fails_the_whole_chain_after_it_without_running_it():
    n3 = leader(slots=1)
    submit(n3, [("a", spec()), ("b", TaskSpec("builtin", "noop", retries=3, after=("a",))),
                ("c", spec("b")), ("x", spec()), ("y", spec("x"))])
    out = finish(n3, "a", FAILED, 2.0)
    assert (state(n3, "b"), state(n3, "c")) == (TaskState.FAILED, TaskState.FAILED)
    assert "b" not in [r.task_id for r in of(out, RunTask)] and "c" not in [r.task_id for r in of(out, RunTask)]
    assert n3.table.get("b").final_attempt().result["error"] == "dependency a failed"
    assert n3.table.get("c").final_attempt().result["error"] == "dependency b failed"
    n3.handle(ClientRequested(9, Cancel("x")), 2.2)
    assert n3.table.get("y").final_attempt().result["error"] == "dependency x was cancelled"


def test_a_task_after_one_that_already_ended_is_decided_at_submit():
    n3 = leader(slots=1)
    submit(n3, [("a", spec())])
    finish(n3, "a", SUCCEEDED, 2.0)
    submit(n3, [("b", spec("a"))], request_id=2, now=2.5)
    assert state(n3, "b") is TaskState.RUNNING


def test_unknown_ids_and_cycles_are_refused_at_submit():
    n3 = leader()
    [reply] = submit(n3, [("b", spec("nope"))])
    assert reply["error"] == "invalid" and "nope: no task with that id" in reply["message"]
    [reply] = submit(n3, [("a", spec("c")), ("b", spec("a")), ("c", spec("b"))], request_id=2)
    assert reply["error"] == "invalid" and "cycle" in reply["message"] and "a" in reply["message"]
    [reply] = submit(n3, [("s", spec("s"))], request_id=3)
    assert "itself" in reply["message"]
    assert n3.table.get("a") is None and n3.table.get("s") is None


def test_blocked_tasks_are_replicated_and_a_new_leader_decides_them():
    n3 = leader(slots=1)
    submit(n3, [("a", spec()), ("b", spec("a"))])
    records = [record_from_wire(record_to_wire(r)) for r in n3.table.values()]
    finished = finish(n3, "a", SUCCEEDED, 2.0) and n3.table.get("a")
    # n2 holds the copy of "b" still blocked, and learns of "a"'s success, but the leader
    # died before it released "b": as the new leader, n2 decides it.
    n2 = node("n2", 2, {"n1": 1}, Config(slots=1))
    for record in records + [finished]:
        n2.table.merge(record)
    assert n2.table.get("b").state is TaskState.BLOCKED
    make_leader(n2)
    assert n2.table.get("b").released and n2.table.get("b").state is not TaskState.BLOCKED


def test_the_released_flag_and_after_travel_on_the_wire_and_old_records_are_unchanged():
    n3 = leader(slots=1)
    submit(n3, [("a", spec()), ("b", spec("a"))])
    finish(n3, "a", SUCCEEDED, 2.0)
    b = n3.table.get("b")
    assert record_from_wire(record_to_wire(b)) == b and len(record_to_wire(b)) == 7
    assert len(record_to_wire(n3.table.get("a"))) == 6 and "after" not in record_to_wire(n3.table.get("a"))[1]
    wire = to_wire(Submit((("t", spec("a")),)))
    assert decode_client_request(wire).tasks[0][1].after == ("a",)
    wire["tasks"][0][1]["after"] = ["bad id"]
    try:
        decode_client_request(wire)
    except ValueError as exc:
        assert "after" in str(exc)
    else:
        raise AssertionError("a bad dependency id was accepted")
