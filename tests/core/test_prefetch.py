"""Prefetch: a node whose tasks come back quickly is sent tasks ahead of a free slot."""

from __future__ import annotations

from p2pq.core.events import ClientRequested, TimerFired
from p2pq.core.messages import Dispatch, Finished, HeartbeatAck, Submit
from p2pq.core.tasks import LOST, SUCCEEDED, Attempt, TaskSpec, TaskState
from p2pq.core.types import Config

from helpers import recv, sends
from test_replication import leader_with_follower


def leader(config: Config):
    """n3 leads and runs nothing itself; n1 has one slot, n2 none; 30 tasks queued."""
    n3 = leader_with_follower()
    n3.config = config
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.9)
    recv(n3, "n1", HeartbeatAck(n3.term, 0, ()), 1.9)
    tasks = tuple((f"t{i:02d}", TaskSpec("builtin", "noop", priority=1 if i % 3 == 0 else 5)) for i in range(30))
    n3.handle(ClientRequested(1, Submit(tasks)), 2.0)
    return n3


def finish(n3, dispatches, at: float) -> list:
    """n1 reports every dispatched attempt done at `at`; what the leader sends back."""
    out = []
    for d in dispatches:
        record = d.record.with_attempt(Attempt(d.attempt_id, "n1", d.record.attempt(d.attempt_id).started_at,
                                               at, SUCCEEDED))
        out += recv(n3, "n1", Finished(n3.term, record), at)
    return out


def warm(n3) -> list:
    """n1 returns two results 5 ms apart (short tasks); the dispatches that follow."""
    out = recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 2.1)
    first = sends(out, Dispatch, to="n1")
    assert len(first) == 1  # not timed yet: its one slot only
    second = sends(finish(n3, first, 2.105), Dispatch, to="n1")
    assert len(second) == 1  # one result is no measure yet
    return first + second, finish(n3, second, 2.110)


def test_a_fast_node_gets_prefetch_per_slot_in_priority_order_and_an_untimed_one_only_its_slots():
    n3 = leader(Config(slots=0, prefetch=4, prefetch_below_s=0.02))
    done, out = warm(n3)
    more = sends(out, Dispatch, to="n1")
    assert len(more) == 1 + 4  # the free slot and four places ahead of it
    order = [d.record.task_id for d in done + more]
    assert order == ["t00", "t03", "t06", "t09", "t12", "t15", "t18"]  # G4 order all the same


def test_a_node_whose_tasks_turn_slow_gets_only_its_slots_again():
    n3 = leader(Config(slots=0, prefetch=4, prefetch_below_s=0.02))
    _, out = warm(n3)
    held = sends(out, Dispatch, to="n1")
    assert len(held) == 5
    now = 2.110
    for _ in range(6):  # each task now takes half a second
        now += 0.5
        out = finish(n3, held[:1], now)
        held = held[1:] + sends(out, Dispatch, to="n1")
    assert n3.lead.task_time_s["n1"] > 0.02
    assert len(n3.lead.assigned["n1"]) == 1  # back to one slot once the queue drained


def test_prefetch_zero_is_one_task_per_slot():
    n3 = leader(Config(slots=0, prefetch=0))
    out = recv(n3, "n1", HeartbeatAck(n3.term, 1, ()), 2.1)
    for i in range(5):
        dispatches = sends(out, Dispatch, to="n1")
        assert len(dispatches) == 1
        out = finish(n3, dispatches, 2.101 + i / 1000)


def test_the_prefetched_tasks_of_a_dead_node_go_back_to_the_queue_with_their_lost_attempts():
    n3 = leader(Config(slots=0, prefetch=4, prefetch_below_s=0.02))
    _, out = warm(n3)
    held = [d.record.task_id for d in sends(out, Dispatch, to="n1")]
    assert len(held) == 5  # one in its slot, four waiting there
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 3.0)
    n3.handle(TimerFired("tick"), 3.2)  # n1 silent since 2.110: dead
    for task_id in held:
        record = n3.table.get(task_id)
        assert record.state is TaskState.QUEUED
        assert [a.outcome for a in record.attempts] == [LOST]  # G2: the attempt stays in the history
    assert n3.lead.assigned.get("n1", {}) == {}
