"""Pruning finished tasks: bounded tables, replicated tombstones, no resurrection."""

from __future__ import annotations

from p2pq.core.events import ClientRequested, ForgetRecords, Reply, TimerFired
from p2pq.core.messages import Append, AppendAck, HeartbeatAck, StateOffer, Submit
from p2pq.core.tasks import SUCCEEDED, Attempt, TaskRecord, TaskSpec
from p2pq.core.types import Config, Term

from helpers import make_leader, node, of, recv, sends

SPEC = TaskSpec("builtin", "noop")


def finished(task_id: str, at: float) -> TaskRecord:
    return TaskRecord(task_id, SPEC, (1, int(at * 10)), at - 1,
                      (Attempt(f"1.n3.{task_id}", "n2", at - 0.5, at, SUCCEEDED),))


def leader(config: Config):
    n3 = node("n3", 3, {"n1": 1, "n2": 2}, config)
    n3.handle(TimerFired("tick"), 1.2)
    # n2 offers five finished tasks and one queued one while n3 gathers
    records = tuple(finished(f"t{i}", 1.0 + i / 10) for i in range(5)) + (TaskRecord("q", SPEC, (1, 99), 1.0),)
    recv(n3, "n1", StateOffer(n3.term, (), ()), 1.21)
    recv(n3, "n2", StateOffer(n3.term, records, ()), 1.22)
    snapshot = n3.followers["n2"]
    recv(n3, "n2", AppendAck(n3.term, snapshot.sent, ok=True), 1.23)
    return n3


def test_the_leader_prunes_the_oldest_finished_tasks_beyond_the_retention():
    n3 = leader(Config(retain_finished=2, slots=0))
    recv(n3, "n1", HeartbeatAck(n3.term, 0, ()), 1.3)
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.3)
    out = n3.handle(TimerFired("tick"), 1.4)
    assert of(out, ForgetRecords) == [ForgetRecords(("t0", "t1", "t2"))]
    assert sorted(n3.table.records) == ["q", "t3", "t4"]  # the queued task is never pruned
    (append,) = sends(out, Append, to="n2")
    assert set(append.forgotten) == {"t0", "t1", "t2"} and not append.snapshot


def test_old_finished_tasks_are_pruned_by_age():
    n3 = leader(Config(retain_finished_s=100.0, slots=0))
    out = n3.handle(TimerFired("tick"), 101.25)  # t0..t2 ended before 1.25
    assert of(out, ForgetRecords) == [ForgetRecords(("t0", "t1", "t2"))]


def test_a_stale_copy_does_not_bring_a_pruned_task_back():
    n3 = leader(Config(retain_finished=0, slots=0))
    n3.handle(TimerFired("tick"), 1.4)
    stale = TaskRecord("t1", SPEC, (1, 11), 0.1)  # a node that missed everything offers it as queued
    recv(n3, "n1", StateOffer(n3.term, (stale,), ()), 1.5)
    assert sorted(n3.table.records) == ["q"]


def test_resubmitting_a_pruned_id_is_acknowledged_without_running_it_again():
    n3 = leader(Config(retain_finished=0, slots=0))
    n3.handle(TimerFired("tick"), 1.4)
    out = list(n3.handle(ClientRequested(1, Submit((("t1", SPEC),))), 1.5))
    out += recv(n3, "n2", AppendAck(n3.term, n3.last_index, ok=True), 1.51)
    assert of(out, Reply)[0].body["ids"] == ["t1"]
    assert n3.table.get("t1") is None


def test_a_follower_drops_what_the_leader_pruned_and_tells_its_journal():
    n1 = node("n1", 1, {"n2": 2})
    term = Term(1, "n2")
    recv(n1, "n2", Append(term, 0, 3, (finished("a", 1.0), finished("b", 1.1)), snapshot=True), 1.2)
    out = recv(n1, "n2", Append(term, 3, 4, (), snapshot=False, forgotten=("a",)), 1.3)
    assert of(out, ForgetRecords) == [ForgetRecords(("a",))]
    assert n1.table.get("a") is None and n1.table.get("b") is not None


def test_under_faults_a_small_retention_keeps_tables_bounded_and_loses_nothing():
    from p2pq.sim.scenarios import SCENARIOS
    from p2pq.sim.workload import Clients, Workload
    from p2pq.sim.world import World
    for seed in range(10):
        world = World(5, seed, Config(retain_finished=20))
        clients = Clients(world, Workload(rate_per_s=40, stop_s=12.0))
        clients.start()
        SCENARIOS["leader-crash"](world)
        world.run_until(40.0)
        (lead,) = world.leaders()
        core = world.nodes[lead].core
        acked = {t for t, op in world.history.ops.items() if op.acked_at is not None}
        unfinished = [t for t in acked if t not in core.forgotten
                      and (core.table.get(t) is None or not core.table.get(t).state.terminal)]
        assert not unfinished, f"seed {seed}: lost {unfinished[:5]}"
        assert len(acked) > 200 and len(core.table) <= 20 + 40  # bounded, give or take a prune interval


def test_a_task_that_finishes_again_later_is_pruned_by_its_last_end():
    n3 = leader(Config(retain_finished=4, slots=0))
    # t0 ended first, but a second attempt (a duplicate run) ended after all the others
    again = finished("t0", 1.0).with_attempt(Attempt("2.n3.t0", "n1", 1.5, 9.0, SUCCEEDED))
    recv(n3, "n1", StateOffer(n3.term, (again,), ()), 1.3)
    recv(n3, "n1", HeartbeatAck(n3.term, 0, ()), 1.3)
    recv(n3, "n2", HeartbeatAck(n3.term, 0, ()), 1.3)
    finished_now = [r.task_id for r in n3.table.values() if r.state.terminal]
    assert len(finished_now) == 5
    out = n3.handle(TimerFired("tick"), 1.4)
    assert of(out, ForgetRecords) == [ForgetRecords(("t1",))]  # not t0: it finished last
