"""Property tests: the queue against a sorted-list model, the lattice laws, the codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pq.core.messages import (Append, Dispatch, Finished, Heartbeat, Member, StateOffer, Submit,
                                from_wire, to_wire)
from p2pq.core.tasks import (CANCELLED, FAILED, LOST, SUCCEEDED, TIMEOUT, Attempt, TaskRecord,
                             TaskSpec, TaskTable)
from p2pq.core.types import Term

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


# Copies of one attempt share id, node and start (the leader set them); they
# differ only in how much of the ending they know.
endings = st.sampled_from([(None, None), (11.0, SUCCEEDED), (12.0, FAILED), (12.0, TIMEOUT),
                           (13.0, CANCELLED), (10.5, LOST)])
copies = st.tuples(st.sampled_from(["1.a.1", "1.a.2", "2.b.1"]), endings).map(
    lambda x: Attempt(x[0], x[0][-3], float(x[0][-1]), x[1][0], x[1][1]))


def records(task_id: str = "t"):
    return st.builds(TaskRecord, task_id=st.just(task_id), spec=st.just(TaskSpec("builtin", "noop")),
                     seq=st.just((1, 1)), submitted_at=st.just(0.0),
                     attempts=st.lists(copies, max_size=3, unique_by=lambda a: a.attempt_id).map(
                         lambda xs: tuple(sorted(xs, key=lambda a: (a.started_at, a.attempt_id)))),
                     cancelled=st.booleans())


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=60))
def test_dispatch_order_matches_a_sorted_list_model(ops):
    """Pop order = (priority, submit order), whatever the interleaving of submits and pops."""
    table, model, popped, expected = TaskTable(), [], [], []
    for i, (priority, pop) in enumerate(ops):
        if pop:
            record, _ = table.pop_runnable(0.0, 0.5, 30.0)
            popped.append(record.task_id if record else None)
            if model:
                model.sort()
                expected.append(model.pop(0)[2])
                # a popped task is no longer queued in the table either
                table.merge(record.with_attempt(Attempt(f"1.n.{i}", "n", 0.0)))
            else:
                expected.append(None)
        else:
            task_id = f"t{i}"
            table.merge(TaskRecord(task_id, TaskSpec("builtin", "noop", priority=priority), (1, i), 0.0))
            model.append((priority, i, task_id))
    assert popped == expected


@given(records(), records(), records())
def test_the_record_join_is_a_semilattice(a, b, c):
    assert a.join(b).join(c) == a.join(b.join(c))
    assert a.join(a) == a
    assert a.join(b) == b.join(a)
    assert set(x.attempt_id for x in a.join(b).attempts) == \
        set(x.attempt_id for x in a.attempts) | set(x.attempt_id for x in b.attempts)


@given(records(), records())
def test_a_terminal_state_is_never_undone_by_a_merge(a, b):
    if a.state.terminal:
        assert a.join(b).state.terminal


terms = st.builds(Term, st.integers(0, 1000), ids)
task_records = st.builds(TaskRecord, task_id=ids, spec=specs, seq=st.tuples(st.integers(0, 99), st.integers(0, 99)),
                         submitted_at=st.floats(0, 1e6),
                         attempts=st.lists(attempts, max_size=2, unique_by=lambda a: a.attempt_id).map(tuple),
                         cancelled=st.booleans())
messages = st.one_of(
    st.builds(Append, term=terms, prev_index=st.integers(-1, 99), last_index=st.integers(0, 99),
              records=st.lists(task_records, max_size=3).map(tuple), snapshot=st.booleans()),
    st.builds(Heartbeat, term=terms, priority=st.integers(0, 9),
              members=st.lists(st.builds(Member, node=ids, priority=st.integers(0, 9),
                                         address=st.none() | st.tuples(st.just("10.0.0.1"), st.integers(1, 65535)),
                                         alive=st.booleans(), slots=st.integers(0, 8), running=st.integers(0, 8)),
                               max_size=3).map(tuple),
              followers=st.lists(ids, max_size=2).map(tuple), want_offer=st.booleans()),
    st.builds(Dispatch, term=terms, record=task_records, attempt_id=ids),
    st.builds(Finished, term=terms, record=task_records),
    st.builds(StateOffer, term=terms, records=st.lists(task_records, max_size=2).map(tuple),
              running=st.lists(st.tuples(ids, attempts), max_size=2).map(tuple)),
    st.builds(Submit, tasks=st.lists(st.tuples(ids, specs), min_size=1, max_size=3).map(tuple)),
)


@settings(max_examples=300)
@given(messages)
def test_wire_round_trip(message):
    import msgpack
    wire = msgpack.unpackb(msgpack.packb(to_wire(message), use_bin_type=True), raw=False)
    assert from_wire(wire) == message


@given(st.dictionaries(st.text(max_size=8), json_scalars, max_size=4))
def test_garbage_maps_raise_decode_errors_only(data):
    from p2pq.core.messages import DecodeError
    try:
        from_wire(data)
    except DecodeError:
        pass
