"""Catching up by difference: table digests let a big table's offers and snapshots carry only what differs."""

from __future__ import annotations

import random

from helpers import node, recv, sends

from p2pq.core.events import TimerFired
from p2pq.core.messages import Append, AppendAck, Coordinator, Heartbeat, StateOffer
from p2pq.core.tasks import (DIGEST_BYTES, SUCCEEDED, Attempt, TaskRecord, TaskSpec, TaskTable, bucket_of,
                             differing_buckets)
from p2pq.core.types import Term

SPEC = TaskSpec("builtin", "noop")


def finished(i: int, node_id: str = "n1") -> TaskRecord:
    return TaskRecord(f"t{i:05d}", SPEC, (1, i), 0.0,
                      attempts=(Attempt(f"a{i}", node_id, 1.0, 2.0, SUCCEEDED, {"value": None}),))


def queued(i: int) -> TaskRecord:
    return TaskRecord(f"t{i:05d}", SPEC, (1, i), 0.0)


def table_of(records) -> TaskTable:
    table = TaskTable()
    for r in records:
        table.merge(r)
    return table


def test_equal_tables_have_equal_digests_whatever_the_order_of_merges():
    rs = [finished(i) for i in range(300)]
    shuffled = rs[:]
    random.Random(3).shuffle(shuffled)
    a = table_of([queued(i) for i in range(300)] + rs)  # every record through an earlier state
    b = table_of(shuffled)
    assert len(a.digests()) == DIGEST_BYTES and a.digests() == b.digests()
    assert differing_buckets(a.digests(), b.digests()) == set()
    assert list(a.values_unlike(b.digests())) == []


def test_only_the_buckets_of_changed_records_differ():
    a = table_of(finished(i) for i in range(300))
    b = table_of([finished(i) for i in range(300) if i != 7] + [queued(7), finished(1000)])
    buckets = differing_buckets(a.digests(), b.digests())
    assert buckets == {bucket_of("t00007"), bucket_of("t01000")}
    unlike = {r.task_id for r in b.values_unlike(a.digests())}
    assert {"t00007", "t01000"} <= unlike
    assert all(bucket_of(t) in buckets for t in unlike)
    b.merge(finished(7))
    b.remove("t01000")
    assert b.digests() == a.digests()


def test_no_digests_means_everything():
    a = table_of(finished(i) for i in range(20))
    assert differing_buckets(a.digests(), b"") is None
    assert len(list(a.values_unlike(b""))) == 20


def member_holding(n: int):
    member = node("n1", 1, {"n3": 3})
    for i in range(n):
        member.table.merge(finished(i))
    return member


def test_a_member_offers_a_new_leader_only_what_differs_from_its_digests():
    member = member_holding(200)
    leader_table = table_of([finished(i) for i in range(200) if i != 5] + [queued(5)])
    term = Term(4, "n3")
    out = recv(member, "n3", Coordinator(term, 3, leader_table.digests()), 0.5)
    (offer,) = sends(out, StateOffer, to="n3")
    sent = {r.task_id for r in offer.records}
    assert "t00005" in sent and len(sent) < 10
    assert offer.digests == member.table.digests() and offer.offer_id in member.offer_ids
    # Without digests (a stranger's heartbeat of a newer term), everything goes.
    other = member_holding(200)
    out = recv(other, "n3", Heartbeat(term, 3, (), (), want_offer=True), 0.5)
    assert sum(len(o.records) for o in sends(out, StateOffer, to="n3")) == 200


def test_a_leader_snapshots_a_follower_by_difference_and_a_restarted_one_refuses_it():
    leader = node("n3", 3, {"n2": 2})
    for i in range(200):
        leader.table.merge(finished(i))
    follower = node("n2", 2, {"n3": 3})
    for i in range(200):
        if i != 9:
            follower.table.merge(finished(i))
    out = leader.handle(TimerFired("tick"), 1.3)
    (coordinator,) = sends(out, Coordinator, to="n2")
    (offer,) = sends(recv(follower, "n3", coordinator, 1.31), StateOffer, to="n3")
    assert len(offer.records) < 10  # nearly everything it holds is the leader's too
    out = recv(leader, "n2", offer, 1.32)
    snapshots = [m for m in sends(out, Append, to="n2") if m.snapshot]
    assert snapshots and snapshots[-1].based_on == offer.offer_id
    assert "t00009" in {r.task_id for m in snapshots for r in m.records}
    assert sum(len(m.records) for m in snapshots) < 20
    out = []
    for m in snapshots:
        out += recv(follower, "n3", m, 1.33)
    assert sends(out, AppendAck, to="n3")[-1].ok and follower.table.digests() == leader.table.digests()

    # The same follower restarted (it remembers no offer): it refuses the sparse snapshot...
    restarted = node("n2", 2, {"n3": 3})
    restarted.rng = random.Random(99)  # a new process: other offer ids
    recv(restarted, "n3", Heartbeat(leader.term, 3, (), (), want_offer=False), 1.4)
    acks = []
    for m in snapshots:
        acks += sends(recv(restarted, "n3", m, 1.41), AppendAck, to="n3")
    assert acks and acks[-1].ok is False
    # ...and the leader answers with everything.
    out = recv(leader, "n2", acks[-1], 1.42)
    whole = [m for m in sends(out, Append, to="n2") if m.snapshot]
    assert whole and whole[-1].based_on == 0 and sum(len(m.records) for m in whole) == 200


def test_the_gather_of_a_big_table_carries_only_the_difference_to_and_from_every_node():
    leader = node("n3", 3, {"n1": 1, "n2": 2})
    members = {n: node(n, p, {"n3": 3}) for n, p in (("n1", 1), ("n2", 2))}
    for core in [leader, *members.values()]:
        for i in range(1000):
            core.table.merge(finished(i))
    members["n1"].table.merge(finished(5000, "n1"))  # the one task the leader lacks
    out = make_leader_by_offers(leader, members)
    assert leader.table.get("t05000") is not None
    snapshots = [m for m in sends(out, Append) if m.snapshot]
    assert snapshots and sum(len(m.records) for m in snapshots) <= 5


def make_leader_by_offers(leader, members) -> list:
    out = leader.handle(TimerFired("tick"), 1.3)
    offers = []
    for name, member in members.items():
        (coordinator,) = sends(out, Coordinator, to=name)
        (offer,) = sends(recv(member, "n3", coordinator, 1.31), StateOffer, to="n3")
        assert len(offer.records) <= 2
        offers.append((name, offer))
    out = []
    for name, offer in offers:
        out += recv(leader, name, offer, 1.32)
    assert leader.role.value == "leader"
    return out


def running(i: int, node_id: str = "n2") -> TaskRecord:
    return TaskRecord(f"t{i:05d}", SPEC, (1, i), 0.0, attempts=(Attempt(f"r{i}", node_id, 1.0, None),))


def test_the_table_finds_a_bucket_s_records_and_the_running_ones_without_a_scan():
    rng = random.Random(7)
    table, other = TaskTable(), TaskTable()
    for step in range(3000):
        i = rng.randrange(400)
        choice = rng.random()
        if choice < 0.1:
            table.remove(f"t{i:05d}")
        else:
            record = (queued, running, finished)[int(choice * 3) % 3](i)
            table.merge(record)
            if rng.random() < 0.5:
                other.merge(record)
    buckets = differing_buckets(table.digests(), other.digests())
    assert buckets  # the tables differ somewhere
    expected = {t for t in table.records if bucket_of(t) in buckets}
    assert {r.task_id for r in table.values_unlike(other.digests())} == expected
    assert sorted(r.task_id for r in table.with_running_attempts()) == sorted(
        t for t, r in table.records.items() if any(a.running for a in r.attempts))
