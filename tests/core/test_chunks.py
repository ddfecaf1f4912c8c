"""No message grows with the table: snapshots, tails and state offers in byte-capped parts (issue 13)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import make_leader, node, of, recv, sends
from p2pq.core import state as core_state
from p2pq.core.events import ClientRequested, Reply, TimerFired
from p2pq.core.messages import Append, AppendAck, Coordinator, HeartbeatAck, StateOffer, Submit
from p2pq.core.tasks import TaskRecord, TaskSpec, stream_chunks
from p2pq.core.types import Config, Term

SMALL = replace(Config(), max_chunk_bytes=1500)


def records(n: int, arg_bytes: int = 300) -> list[TaskRecord]:
    return [TaskRecord(f"t{i:02d}", TaskSpec("builtin", "echo", ("x" * arg_bytes,)), (1, i), 0.0)
            for i in range(n)]


def chunks(records, max_records, max_bytes):
    parts = list(stream_chunks(records, max_records, max_bytes))
    assert [n for n, _, _ in parts] == list(range(len(parts)))
    assert [last for _, _, last in parts] == [False] * (len(parts) - 1) + [True]
    return [chunk for _, chunk, _ in parts]


def test_chunks_keep_to_the_byte_cap_and_put_a_big_record_alone():
    rs = records(10)
    parts = chunks(rs, 1024, 1500)
    assert [r for p in parts for r in p] == rs
    assert all(sum(r.approx_bytes for r in p) <= 1500 for p in parts) and len(parts) > 2
    big = TaskRecord("big", TaskSpec("builtin", "echo", ("y" * 5000,)), (1, 99), 0.0)
    assert chunks([rs[0], big, rs[1]], 1024, 1500) == [[rs[0]], [big], [rs[1]]]
    assert chunks(rs, 3, 10**9) == [rs[0:3], rs[3:6], rs[6:9], rs[9:10]]
    assert chunks([], 3, 10**9) == [[]]  # an empty table still sends its one (last) part


def leader_holding(n_tasks: int):
    """n3 leads with n2 as its follower and holds n_tasks (acknowledged) tasks."""
    n3 = node("n3", 3, {"n1": 1, "n2": 2}, SMALL)
    out = make_leader(n3)
    (snap,) = sends(out, Append, to="n2")
    recv(n3, "n2", AppendAck(n3.term, snap.last_index, ok=True), 1.31)
    tasks = tuple((r.task_id, r.spec) for r in records(n_tasks))
    out = n3.handle(ClientRequested(1, Submit(tasks)), 2.0)
    appended = sends(out, Append, to="n2")
    assert len(appended) > 1 and all(not a.snapshot for a in appended)
    assert [a.prev_index for a in appended[1:]] == [a.last_index for a in appended[:-1]]  # consecutive
    out = recv(n3, "n2", AppendAck(n3.term, appended[-1].last_index, ok=True), 2.01)
    assert of(out, Reply)[0].body["ok"]
    return n3


def snapshot_for_a_new_follower(n3) -> list[Append]:
    n3.lead.followers["n2"].needs_snapshot = True
    out = n3.handle(ClientRequested(2, Submit((("late", TaskSpec("builtin", "noop")),))), 3.0)
    parts = [a for a in sends(out, Append, to="n2") if a.snapshot]
    assert len(parts) > 2 and [p.part for p in parts] == list(range(len(parts)))
    # cut as they go: each part says one more follows, the last that it is the last
    assert [p.parts for p in parts] == [n + 2 for n in range(len(parts) - 1)] + [len(parts)]
    return parts


def test_a_snapshot_applies_only_once_every_part_came_in_order():
    parts = snapshot_for_a_new_follower(leader_holding(12))
    n2 = node("n2", 2, {"n1": 1, "n3": 3}, SMALL)
    recv(n2, "n3", Coordinator(parts[0].term, 3), 3.0)
    for p in parts[:-1]:
        out = recv(n2, "n3", p, 3.01)
        assert sends(out, AppendAck) == [] and n2.applied_index == -1
    out = recv(n2, "n3", parts[-1], 3.02)
    assert sends(out, AppendAck) == [AppendAck(parts[0].term, parts[-1].last_index, True, parts[-1].sent_at)]
    assert len(n2.table) == 13 and n2.caught_up


def test_a_snapshot_with_a_missing_part_is_refused_once_and_sent_again():
    n3 = leader_holding(12)
    parts = snapshot_for_a_new_follower(n3)
    n2 = node("n2", 2, {"n1": 1, "n3": 3}, SMALL)
    recv(n2, "n3", Coordinator(parts[0].term, 3), 3.0)
    acks = []
    for p in parts[:1] + parts[2:]:  # part 1 lost
        acks += sends(recv(n2, "n3", p, 3.01), AppendAck)
    assert [a.ok for a in acks] == [False] and n2.applied_index == -1
    out = recv(n3, "n2", acks[0], 3.05)
    again = [a for a in sends(out, Append, to="n2") if a.snapshot]
    assert len(again) == len(parts)  # the whole snapshot again


def test_a_big_state_offer_comes_in_parts_and_counts_only_when_whole():
    member = node("n1", 1, {"n2": 2}, SMALL)
    for r in records(10):
        member.table.merge(r)
    out = recv(member, "n2", Coordinator(Term(1, "n2"), 2), 1.5)
    offers = sends(out, StateOffer, to="n2")
    assert len(offers) > 2 and sum(len(o.records) for o in offers) == 10
    # asked again by the next heartbeat: a big offer is not resent before a failure timeout
    again = sends(recv(member, "n2", Coordinator(Term(1, "n2"), 2), 1.7), StateOffer)
    assert again == []
    assert len(sends(recv(member, "n2", Coordinator(Term(1, "n2"), 2), 2.6), StateOffer)) == len(offers)

    leader = node("n2", 2, {"n1": 1}, SMALL)
    leader.handle(__import__("p2pq.core.events", fromlist=["TimerFired"]).TimerFired("tick"), 1.3)
    term = leader.term
    offers = [replace(o, term=term) for o in offers]
    for o in offers[:1] + offers[2:]:  # a part lost
        recv(leader, "n1", o, 1.31)
    assert "n1" not in leader.lead.offers_from and len(leader.table) == len(leader.table.records)
    for o in offers:
        recv(leader, "n1", o, 1.32)
    assert "n1" in leader.lead.offers_from and len(leader.table) == 10


def test_a_big_snapshot_goes_a_few_records_per_tick_and_what_comes_meanwhile_is_handled(monkeypatch):
    monkeypatch.setattr(core_state, "BULK_RECORDS", 3)
    n3 = leader_holding(12)

    def snapshot_parts(out):
        return [a for a in sends(out, Append, to="n2") if a.snapshot]
    n3.lead.followers["n2"].needs_snapshot = True
    out = n3.handle(ClientRequested(2, Submit((("late", TaskSpec("builtin", "noop")),))), 3.0)
    first = snapshot_parts(out)
    assert sum(len(a.records) for a in first[:-1]) < 3 <= sum(len(a.records) for a in first)
    assert first[-1].part < first[-1].parts - 1  # more to come
    out = recv(n3, "n2", HeartbeatAck(n3.term, 1, ()), 3.01)  # handled between two ticks: no parts
    assert snapshot_parts(out) == []
    parts, now = list(first), 3.0
    while n3.bulk:
        now += n3.config.heartbeat_interval_s
        out = n3.handle(TimerFired("tick"), now)
        assert sum(len(a.records) for a in snapshot_parts(out)[:-1]) < 3
        parts += snapshot_parts(out)
    assert [p.part for p in parts] == list(range(parts[-1].parts))  # every part, in order, once
    assert {r.task_id for p in parts for r in p.records} == set(n3.table.records)

    n3.lead.followers["n2"].needs_snapshot = True  # a newer snapshot replaces what is left of an older one
    old = snapshot_parts(n3.handle(ClientRequested(3, Submit((("later", TaskSpec("builtin", "noop")),))), 4.0))
    n3.lead.followers["n2"].needs_snapshot = True
    new = snapshot_parts(n3.handle(ClientRequested(4, Submit((("last", TaskSpec("builtin", "noop")),))), 4.1))
    assert new[0].part == 0 and new[0].last_index > old[0].last_index
    out = n3.handle(TimerFired("tick"), 4.2)
    assert {a.last_index for a in snapshot_parts(out)} == {new[0].last_index}


@pytest.mark.parametrize("bulk_records", [core_state.BULK_RECORDS, 3])
@pytest.mark.parametrize("scenario", ["leader-crash", "crash-restart", "isolate-leader", "lossy-links"])
def test_the_cluster_survives_faults_with_every_table_in_many_parts(scenario, bulk_records, monkeypatch):
    """The simulator, codec in the loop, with a cap so small that every snapshot and offer has
    parts; and with only a few records' worth of parts sent per step."""
    from p2pq.sim.runner import run
    from p2pq.sim.scenarios import SCENARIOS
    monkeypatch.setattr(core_state, "BULK_RECORDS", bulk_records)
    for seed in range(3):
        config = replace(Config(), max_chunk_bytes=2000)
        result = run(scenario, SCENARIOS[scenario], seed, config=config, keep_world=True)
        assert result.ok, result.problems()
        assert result.report.lost == 0 and result.world.codec_errors == []
