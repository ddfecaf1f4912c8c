"""Hypothesis strategies: valid messages of every type, and hostile ones made from them.

A hostile message is a well-formed frame (a msgpack map with a str
"type") whose contents break the rules: a valid message of some type with
one or two values anywhere inside it replaced by something extreme (a
number beyond 64 bits or NaN, a string that is too long or of the wrong
charset, bytes, a deep or huge container), a field dropped, an unknown
field added, or a message of one type wearing another's name. Every value
stays one that msgpack can carry, so each one could come off a socket.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from p2pq.core.messages import (Answer, Append, AppendAck, Cancel, CancelRun, Coordinator, Dispatch,
                                Election, Finished, FinishedAck, Forward, ForwardReply, Gossip,
                                Heartbeat, HeartbeatAck, Join, Leave, Member, Query, Reject, StateOffer,
                                Submit, Wait, MESSAGE_TYPES, to_wire)
from p2pq.core.tasks import CANCELLED, FAILED, LOST, SUCCEEDED, TIMEOUT, Attempt, TaskRecord, TaskSpec
from p2pq.core.types import Term

# -- valid values ---------------------------------------------------------------
ids = st.text("abcdef0123456789", min_size=1, max_size=8)
json_scalars = st.none() | st.booleans() | st.integers(-2**31, 2**31) | st.text(max_size=10) \
    | st.floats(allow_nan=False, allow_infinity=False)
targets = {"builtin": st.sampled_from(["noop", "echo", "sleep", "my_task"]),
           "python": st.sampled_from(["pkg.mod:fn", "lab.jobs:train", "m:f"]),
           "shell": ids}
specs = st.sampled_from(sorted(targets)).flatmap(lambda kind: st.builds(
    TaskSpec, kind=st.just(kind), target=targets[kind],
    args=st.lists(json_scalars if kind != "shell" else st.text(max_size=10), max_size=3).map(tuple),
    priority=st.integers(-2**63, 2**63 - 1),
    retries=st.integers(0, 3), timeout_s=st.none() | st.floats(0.1, 100),
    options=st.dictionaries(st.text(max_size=5).filter(lambda k: k not in ("cwd", "env", "kwargs")),
                            json_scalars, max_size=2)))
attempts = st.builds(
    Attempt, attempt_id=st.sampled_from(["1.a.1", "1.a.2", "2.b.1"]), node=st.sampled_from(["a", "b"]),
    started_at=st.floats(0, 10), ended_at=st.none() | st.floats(10, 20),
    outcome=st.sampled_from([None, SUCCEEDED, FAILED, TIMEOUT, CANCELLED, LOST]),
    result=st.none() | st.dictionaries(st.text(max_size=5), json_scalars, max_size=2),
).map(lambda a: a if (a.ended_at is None) == (a.outcome is None) else
      Attempt(a.attempt_id, a.node, a.started_at, None, None, None))
terms = st.builds(Term, st.integers(0, 1000), ids)
task_records = st.builds(TaskRecord, task_id=ids, spec=specs, seq=st.tuples(st.integers(0, 99), st.integers(0, 99)),
                         submitted_at=st.floats(0, 1e6),
                         attempts=st.lists(attempts, max_size=2, unique_by=lambda a: a.attempt_id).map(tuple),
                         cancelled=st.booleans())
addresses = st.none() | st.tuples(st.just("10.0.0.1"), st.integers(1, 65535))
members = st.lists(st.builds(Member, node=ids, priority=st.integers(0, 9), address=addresses,
                             alive=st.booleans(), slots=st.integers(0, 8), running=st.integers(0, 8)),
                   max_size=3).map(tuple)
id_tuples = st.lists(ids, max_size=3).map(tuple)
client_requests = st.one_of(
    st.builds(Submit, tasks=st.lists(st.tuples(ids, specs), min_size=1, max_size=3).map(tuple)),
    st.builds(Cancel, task_id=ids), st.builds(Wait, task_id=ids),
    st.builds(Query, what=st.sampled_from(["list", "stats", "peers"])),
    st.builds(Query, what=st.just("task"), params=st.fixed_dictionaries({"id": ids})),
)
messages = st.one_of(
    st.builds(Join, priority=st.integers(0, 9), address=addresses, slots=st.integers(0, 8)),
    st.builds(Gossip, members=members), st.just(Leave()),
    st.builds(Heartbeat, term=terms, priority=st.integers(0, 9), members=members, followers=id_tuples,
              want_offer=st.booleans()),
    st.builds(HeartbeatAck, term=terms, slots=st.integers(0, 8), busy=id_tuples),
    st.builds(Election, term=terms, priority=st.integers(0, 9)), st.builds(Answer, term=terms),
    st.builds(Coordinator, term=terms, priority=st.integers(0, 9)), st.builds(Reject, term=terms),
    st.builds(StateOffer, term=terms, records=st.lists(task_records, max_size=2).map(tuple),
              running=st.lists(st.tuples(ids, attempts), max_size=2).map(tuple), forgotten=id_tuples),
    st.builds(Append, term=terms, prev_index=st.integers(-1, 99), last_index=st.integers(0, 99),
              records=st.lists(task_records, max_size=3).map(tuple), snapshot=st.booleans(),
              forgotten=id_tuples, sent_at=st.floats(0, 1e6)),
    st.builds(AppendAck, term=terms, index=st.integers(-1, 99), ok=st.booleans(), sent_at=st.floats(0, 1e6)),
    st.builds(Dispatch, term=terms, record=task_records, attempt_id=ids),
    st.builds(Finished, term=terms, record=task_records),
    st.builds(FinishedAck, term=terms, attempt_ids=id_tuples),
    st.builds(CancelRun, term=terms, task_id=ids, attempt_id=ids),
    st.builds(Forward, origin=ids, request_id=st.integers(0, 2**31), request=client_requests),
    st.builds(ForwardReply, request_id=st.integers(0, 2**31),
              body=st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)),
    client_requests,
)

# -- hostile values -------------------------------------------------------------
EXTREME_INTS = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
texts = st.text(max_size=20) | st.sampled_from(["", "x" * 201, "x" * 5000, "a b", "\x00", "tâche", "pkg.mod:"])
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.sampled_from(EXTREME_INTS)
           | st.floats() | texts | st.binary(max_size=16))
hostile_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4) | st.integers(-(2**63), 2**63), inner,
                                                                 max_size=4),
    max_leaves=12,
) | st.integers(1, 400).map(lambda n: nested(n)) | st.integers(10_001, 20_000).map(lambda n: [0] * n)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside a wire value, the type tag excepted."""
    out, stack = [], [value]
    while stack:
        v = stack.pop()
        keys = [k for k in v if k != "type"] if isinstance(v, dict) else range(len(v)) \
            if isinstance(v, list) else ()
        for k in keys:
            out.append((v, k))
            stack.append(v[k])
    return out


@st.composite
def hostile_messages(draw) -> dict:
    """A valid message's wire map with one to three hostile edits."""
    wire = to_wire(draw(messages))
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "retype"]))
        slots = _slots(wire)
        if edit == "replace" and slots:
            container, key = slots[draw(st.integers(0, len(slots) - 1))]
            container[key] = draw(hostile_values)
        elif edit == "drop" and slots:
            container, key = slots[draw(st.integers(0, len(slots) - 1))]
            if isinstance(container, dict):
                del container[key]
        elif edit == "add":
            wire[draw(st.text(max_size=8).filter(lambda k: k != "type"))] = draw(hostile_values)
        elif edit == "retype":
            wire["type"] = draw(st.sampled_from(sorted(MESSAGE_TYPES)) | st.text(max_size=12))
    return wire
