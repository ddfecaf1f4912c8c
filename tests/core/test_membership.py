"""Over time: a node dead for long is forgotten (and nobody brings it back); clocks that disagree."""

from __future__ import annotations

from dataclasses import replace

from helpers import make_leader, node, of, recv, sends

from p2pq.core.events import ForgetPeer, Note, PeerDiscovered, TimerFired
from p2pq.core.messages import Gossip, Heartbeat, HeartbeatAck, Join, Member
from p2pq.core.tasks import FAILED, Attempt, TaskRecord, TaskSpec, TaskTable
from p2pq.core.types import Config, Term

CONFIG = replace(Config(), forget_after_s=30.0)


def keep_alive(core, peers: list[str], now: float) -> None:
    for peer in peers:
        recv(core, peer, HeartbeatAck(core.term, 1, 0), now)


def test_a_leader_forgets_a_dead_peer_after_forget_after_s_and_stops_heartbeating_it():
    leader = node("c", 3, {"a": 1, "b": 2}, CONFIG)
    make_leader(leader)
    out, now = [], 1.3
    while now < 40.0:  # "b" keeps answering, "a" went silent at the start
        now += 0.2
        keep_alive(leader, ["b"], now)
        out += leader.handle(TimerFired("tick"), now)
    assert [c.node for c in of(out, ForgetPeer)] == ["a"]
    forgotten = [n for n in of(out, Note) if n.kind == "node_forgotten"]
    assert forgotten and forgotten[0].detail["node"] == "a"
    assert forgotten[0].detail["dead_s"] >= 30.0
    assert "a" not in leader.peers and "b" in leader.peers
    later = leader.handle(TimerFired("tick"), now + 0.2)
    assert sends(later, Heartbeat, to="b") and not sends(later, to="a")


def test_a_peer_dead_for_less_than_forget_after_s_is_kept():
    leader = node("c", 3, {"a": 1, "b": 2}, CONFIG)
    make_leader(leader)
    out, now = [], 1.3
    while now < 25.0:
        now += 0.2
        keep_alive(leader, ["b"], now)
        out += leader.handle(TimerFired("tick"), now)
    assert not of(out, ForgetPeer)
    assert not leader.peers["a"].alive
    assert sends(leader.handle(TimerFired("tick"), now + 0.2), Heartbeat, to="a")


def test_a_forgotten_node_that_comes_back_is_met_as_new():
    leader = node("c", 3, {"a": 1, "b": 2}, CONFIG)
    make_leader(leader)
    now = 1.3
    while "a" in leader.peers:
        now += 0.2
        keep_alive(leader, ["b"], now)
        leader.handle(TimerFired("tick"), now)
        assert now < 60.0
    recv(leader, "a", Join(1, ("10.0.0.1", 7000), 2), now + 0.1)
    assert leader.peers["a"].alive and leader.peers["a"].slots == 2
    assert sends(leader.handle(TimerFired("tick"), now + 0.3), Heartbeat, to="a")


def test_heartbeats_and_gossip_do_not_bring_back_a_forgotten_node():
    member = node("a", 1, {"c": 3}, CONFIG)
    dead = Member("b", 2, None, False, 1, 0)
    recv(member, "c", Heartbeat(member.max_term, 3, (), (), False), 0.1)
    recv(member, "c", Gossip((dead,)), 0.2)
    assert "b" not in member.peers
    term = Term(1, "c")
    recv(member, "c", Heartbeat(term, 3, (Member("c", 3, None, True, 1, 0), dead), (), False), 0.3)
    assert "b" not in member.peers
    # Alive, it is news: the member meets it.
    recv(member, "c", Heartbeat(term, 3, (Member("c", 3, None, True, 1, 0), replace(dead, alive=True)), (), False), 0.4)
    assert member.peers["b"].alive


def test_a_member_forgets_a_peer_its_leader_reports_dead_and_gossips_only_the_living():
    member = node("a", 1, {"c": 3}, CONFIG)
    member.handle(PeerDiscovered("b", 2), 0.0)
    term = Term(1, "c")
    listed = (Member("c", 3, None, True, 1, 0), Member("b", 2, None, False, 1, 0))
    out, now = [], 0.0
    while now < 40.0:
        now += 0.2
        out += recv(member, "c", Heartbeat(term, 3, listed if now < 20 else listed[:1], (), False), now)
        out += member.handle(TimerFired("tick"), now)
        if "b" in member.peers:
            gossip = sends(out, Gossip, to="c")
            assert all(m.node != "b" for g in gossip for m in g.members)
    assert [c.node for c in of(out, ForgetPeer)] == ["b"]
    assert member.role.value == "member" and member.leader == "c"


def test_a_failure_stamped_by_a_clock_an_hour_ahead_is_retried_without_waiting_out_the_skew():
    now = 1000.0
    spec = TaskSpec("builtin", "echo", (1,), retries=3)
    ahead = TaskRecord("t1", spec, (0, 1), now - 5, attempts=(Attempt("a1", "n2", now + 3590, now + 3600, FAILED),))
    behind = TaskRecord("t2", spec, (0, 2), now - 5, attempts=(Attempt("a2", "n2", now - 1, now - 0.1, FAILED),))
    table = TaskTable()
    table.merge(ahead)
    table.merge(behind)
    found, next_at = table.pop_runnable(now, 0.5, 30.0)
    assert found is not None and found.task_id == "t1"
    assert table.pop_runnable(now, 0.5, 30.0) == (None, now - 0.1 + 0.5)  # in its backoff still


def test_a_member_takes_the_others_slots_from_the_leaders_heartbeat_and_gossip():
    """A restarted member knows its peers only from discovery (1 slot each) until the leader says."""
    member = node("a", 1, {"c": 3})
    term = Term(1, "c")
    listed = (Member("c", 3, ("10.0.0.3", 7470), True, 8, 0), Member("b", 2, ("10.0.0.2", 7470), True, 4, 1),
              Member("a", 1, None, True, 1, 0))
    recv(member, "c", Heartbeat(term, 3, listed, ("b",), False), 0.5)
    assert {n: p.slots for n, p in member.peers.items()} == {"c": 8, "b": 4}
    recv(member, "c", Gossip((Member("d", 0, ("10.0.0.4", 7470), True, 0, 0),)), 0.6)
    assert member.peers["d"].slots == 0  # a coordinator that runs no task
    assert {m["node"]: m["slots"] for m in member.view()["members"]} == {"a": 1, "c": 8, "b": 4, "d": 0}
