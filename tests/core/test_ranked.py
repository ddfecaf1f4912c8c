"""The ranked election: a node that knows a live node above it waits for it instead of electing."""

from __future__ import annotations

import statistics

from p2pq.core.events import TimerFired
from p2pq.core.messages import Coordinator, Election, Heartbeat
from p2pq.core.types import Config, Role, Term
from p2pq.sim.runner import run
from p2pq.sim.scenarios import SCENARIOS

from helpers import node, recv, sends

RANKED = Config(election="ranked")


def member_of(node_id: str, priority: int, config: Config = RANKED):
    """A member of n5's cluster (n1..n4 alive), whose leader then falls silent."""
    core = node(node_id, priority, {p: int(p[1]) for p in ("n1", "n2", "n3", "n4", "n5") if p != node_id}, config)
    recv(core, "n5", Heartbeat(Term(1, "n5"), 5, (), (), want_offer=False), 0.1)
    assert core.role is Role.MEMBER and core.leader == "n5"
    return core


def test_a_node_with_a_live_node_above_waits_instead_of_electing():
    n2 = member_of("n2", 2)
    out = list(n2.handle(TimerFired("tick"), 1.5))  # the leader silent past the failure timeout
    assert n2.role is Role.WAITING and sends(out, Election) == []
    assert n2.peers["n5"].alive is False and n2.leader is None
    recv(n2, "n4", Coordinator(Term(2, "n4"), 4), 1.6)  # the highest live node took over
    assert n2.role is Role.MEMBER and n2.leader == "n4"


def test_the_highest_live_node_takes_over_at_once():
    n4 = member_of("n4", 4)
    out = list(n4.handle(TimerFired("tick"), 1.5))
    assert n4.role is Role.GATHERING and n4.term == Term(2, "n4")
    assert {m.term for m in sends(out, Coordinator)} == {Term(2, "n4")} and sends(out, Election) == []


def test_a_waiting_node_elects_the_classic_way_when_no_coordinator_comes():
    n2 = member_of("n2", 2)
    n2.handle(TimerFired("tick"), 1.5)
    deadline = 1.5 + RANKED.answer_timeout_s + RANKED.coordinator_timeout_s
    out = list(n2.handle(TimerFired("election"), deadline + 0.01))
    assert n2.role is Role.ELECTING and {m.priority for m in sends(out, Election)} == {2}
    assert sorted(c.to for c in out if hasattr(c, "to") and isinstance(c.message, Election)) == ["n3", "n4"]


def test_classic_is_unchanged_every_node_elects():
    n2 = member_of("n2", 2, Config())
    out = list(n2.handle(TimerFired("tick"), 1.5))
    assert n2.role is Role.ELECTING and len(sends(out, Election)) == 2


def test_at_twenty_nodes_a_leader_crash_costs_far_fewer_election_messages_ranked():
    def election_messages(config: Config) -> float:
        counts = []
        for seed in range(5):
            result = run("leader-crash", SCENARIOS["leader-crash"], seed, nodes=20, config=config)
            assert result.ok, result.problems()
            counts.append(result.report.messages.get("election", 0) + result.report.messages.get("answer", 0))
        return statistics.median(counts)
    classic, ranked = election_messages(Config()), election_messages(RANKED)
    assert ranked < classic / 2, (classic, ranked)
