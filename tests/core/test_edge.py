"""G5 at the edge: every field checked as it is decoded, and one bad event never takes the others down."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_leader, node, of, recv
from p2pq.core import clients, compaction
from p2pq.core.events import ClientRequested, MessageReceived, Note, Reply, SetTimer, TimerFired
from p2pq.core.messages import (DecodeError, Election, Forward, Query, Submit, Wait, decode_client_request,
                                from_wire, record_to_wire, spec_to_wire, to_wire)
from p2pq.core.node import ON_MESSAGE, ON_TIMER
from p2pq.core.tasks import TaskSpec
from p2pq.core.types import IllegalTransition, Role, Trigger
from p2pq.net.framing import decode_body, encode_frame
from p2pq.net.storage import _pack_row

from strategies import hostile_messages

SPEC = spec_to_wire(TaskSpec("builtin", "echo", ("x",)))


def submit(task_id=None, **spec_changes) -> dict:
    return {"type": "submit", "tasks": [["t1" if task_id is None else task_id, {**SPEC, **spec_changes}]]}


def refused(wire: dict, *words: str) -> str:
    with pytest.raises(DecodeError) as err:
        decode_client_request(wire)
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message and len(message) < 300
    return message


# -- the regressions of issue 12 ------------------------------------------------------------

def test_a_non_string_task_id_is_refused_naming_the_field():
    refused(submit(5), "task id", "got 5")


def test_integers_beyond_64_bits_are_refused_for_every_number_of_a_spec():
    for field in ("priority", "retries"):
        refused(submit(**{field: 2**64 - 1}), field)
    refused(submit(timeout_s=float(2**64)), "timeout_s")
    refused(submit(priority=2**70), "priority")  # from JSON (HTTP) or Python, where msgpack never looks


@pytest.mark.parametrize("wire, words", [
    ({"type": "query", "what": "task", "params": "x"}, ["params must be a map"]),
    ({"type": "query", "what": "list", "params": {"limit": "abc"}}, ["limit must be an integer"]),
    ({"type": "query", "what": "list", "params": {"limit": 0}}, ["limit must be between"]),
    ({"type": "query", "what": "task", "params": {}}, ["params.id"]),
    ({"type": "wait", "task_id": ["a"]}, ["task_id"]),
    ({"type": "cancel", "task_id": {"a": 1}}, ["task_id"]),
    ({"type": "submit", "tasks": [["t1", {**SPEC, "timeout_s": "abc"}]]}, ["timeout_s must be a number"]),
])
def test_malformed_requests_are_refused_before_the_core(wire, words):
    refused(wire, *words)


def test_a_missing_limit_is_the_default_not_an_error():
    assert decode_client_request({"type": "query", "what": "list", "params": {"limit": None}}).params == {}


def test_infinite_priority_and_a_deep_forward_are_refused_not_crashed_on():
    refused(submit(priority=math.inf), "priority")
    deep: dict = {"type": "cancel", "task_id": "t"}
    for _ in range(900):
        deep = {"type": "forward", "origin": "n1", "request_id": 1, "request": deep}
    with pytest.raises(DecodeError) as err:
        from_wire(deep)
    assert "not a client request" in str(err.value)


@pytest.mark.parametrize("changes, words", [
    ({"timeout_s": math.nan}, ["timeout_s"]),
    ({"priority": 2.5}, ["priority must be an integer"]),
    ({"args": [b"\x00\x01"]}, ["bytes", "not a JSON value"]),
    ({"kind": "python", "target": "pkg.mod:"}, ["pkg.module:function"]),
    ({"args": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, ["nests deeper"]),
    ({"retries": 101}, ["retries"]),
    ({"options": {"cwd": 5}}, ["cwd"]),
    ({"kind": "shell", "target": "ls", "args": [["-l"]]}, ["shell arguments"]),
])
def test_accepted_then_wrong_is_now_refused_at_submit(changes, words):
    refused(submit(**changes), *words)


def test_a_resubmit_of_an_id_with_another_spec_is_a_conflict_and_the_same_spec_is_idempotent():
    leader = node("n2", 2, {"n1": 1})
    make_leader(leader)
    first = Submit((("t1", TaskSpec("builtin", "echo", ("x",))),))
    again = Submit((("t1", TaskSpec("builtin", "echo", ("y",))),))
    leader.handle(ClientRequested(1, first), 2.0)
    out = leader.handle(ClientRequested(2, again), 2.1)
    assert [r.body["error"] for r in of(out, Reply)] == ["conflict"]
    both = Submit((("t2", TaskSpec("builtin", "noop")), ("t2", TaskSpec("builtin", "echo"))))
    out = leader.handle(ClientRequested(3, both), 2.2)
    assert [r.body["error"] for r in of(out, Reply)] == ["conflict"] and "t2" not in leader.table
    assert leader.table.get("t1").spec.args == ("x",)


# -- per-event isolation in the core ------------------------------------------------------------

def test_an_event_that_raises_is_answered_internal_and_the_rest_of_its_step_goes_on(monkeypatch):
    leader = node("n2", 2, {"n1": 1})
    make_leader(leader)
    real = clients._query

    def flaky(core, what, params):
        if what == "stats":
            raise KeyError("a bug")
        return real(core, what, params)

    monkeypatch.setattr(clients, "_query", flaky)
    out = leader.handle_batch([ClientRequested(1, Query("stats")), ClientRequested(2, Query("list")),
                               MessageReceived("n1", Forward("n1", 7, Query("stats")))], 2.0)
    replies = {r.request_id: r.body for r in of(out, Reply)}
    assert replies[1]["error"] == "internal" and replies[2]["ok"] is True
    notes = [n for n in of(out, Note) if n.kind == "internal_error"]
    assert len(notes) == 2 and "KeyError: 'a bug'" in notes[0].detail["error"]
    assert "Traceback" in notes[0].detail["traceback"]
    forwarded = [c.message for c in out if type(c).__name__ == "Send" and c.to == "n1"
                 and type(c.message).__name__ == "ForwardReply"]
    assert forwarded and forwarded[0].body["error"] == "internal"


def test_a_tick_that_raises_keeps_the_heartbeat_timer(monkeypatch):
    leader = node("n2", 2, {"n1": 1})
    make_leader(leader)
    monkeypatch.setattr(compaction, "maybe_prune", lambda core: 1 / 0)
    out = leader.handle(TimerFired("tick"), 2.0)
    assert [t.name for t in of(out, SetTimer)].count("tick") == 1
    assert any(n.kind == "internal_error" for n in of(out, Note))
    assert leader.role is Role.LEADER


def test_a_timer_whose_handler_raises_fires_again(monkeypatch):
    n1 = node("n1", 1, {"n2": 2})
    n1.handle(TimerFired("tick"), 1.5)  # n1 asks n2, waits for an answer
    monkeypatch.setitem(ON_TIMER[Role.ELECTING], "election", lambda core: 1 / 0)
    out = n1.handle(TimerFired("election"), 1.8)
    assert [t.name for t in of(out, SetTimer)] == ["election"]
    monkeypatch.undo()
    n1.handle(TimerFired("election"), 2.0)
    assert n1.role in (Role.GATHERING, Role.LEADER)  # no answer came: it won, one heartbeat late


def test_an_invariant_violation_stops_the_step(monkeypatch):
    leader = node("n2", 2, {"n1": 1})
    make_leader(leader)

    def illegal(core, sender, msg):
        core.become(Role.WAITING, Trigger.ANSWER)  # leader -> waiting: never taken

    monkeypatch.setitem(ON_MESSAGE[Role.LEADER], Election, illegal)
    with pytest.raises(IllegalTransition):
        recv(leader, "n1", from_wire({"type": "election", "term": [1, "n1"], "priority": 1}), 2.0)


# -- fuzzing the real codec -------------------------------------------------------------------------

def _records(message) -> list:
    return [*getattr(message, "records", ()), *([message.record] if hasattr(message, "record") else [])]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_messages())
def test_a_hostile_frame_is_refused_or_decodes_to_what_encodes_again(wire):
    """What passes the edge can always be sent on and journaled: the journal's encoding error of issue 12 cannot recur."""
    body = msgpack.packb(wire, use_bin_type=True)  # every hostile value is one msgpack carries
    try:
        message = from_wire(decode_body(body))
    except DecodeError as exc:
        assert "\n" not in str(exc)
        return
    decode_body(encode_frame(to_wire(message))[4:])
    for record in _records(message):
        _pack_row(record.task_id, record_to_wire(record))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["n1", "n3", "stranger"]), hostile_messages()), min_size=1, max_size=6))
def test_a_leader_handles_whatever_decodes_without_an_internal_error(batch):
    leader = node("n9", 9, {"n1": 1, "n3": 3})
    make_leader(leader, 1.3)
    now = 2.0
    for sender, wire in batch:
        try:
            message = from_wire(decode_body(msgpack.packb(wire, use_bin_type=True)))
        except DecodeError:
            continue
        event = (ClientRequested(1, message) if type(message).__name__ in ("Submit", "Cancel", "Query", "Wait")
                 else MessageReceived(sender, message))
        now += 0.01
        out = leader.handle(event, now)
        errors = [n.detail for n in of(out, Note) if n.kind == "internal_error"]
        assert not errors, errors[0]["traceback"]
    out = leader.handle(TimerFired("tick"), now + 0.3)
    assert "tick" in [t.name for t in of(out, SetTimer)]


def test_a_wait_is_checked_like_any_other_request():
    assert decode_client_request(to_wire(Wait("t-1"))) == Wait("t-1")
