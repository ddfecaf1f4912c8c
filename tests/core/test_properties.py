"""Property tests: the queue against a sorted-list model, the lattice laws, the codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pq.core.messages import from_wire, to_wire
from p2pq.core.tasks import (CANCELLED, FAILED, LOST, SUCCEEDED, TIMEOUT, Attempt, TaskRecord,
                             TaskSpec, TaskTable)

from strategies import json_scalars, messages  # valid messages of every type


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
