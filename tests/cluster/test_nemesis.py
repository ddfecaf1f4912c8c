"""The fault catalogue on a namespace cluster: the same shapes as the simulator's, turned into cuts and signals.

No namespaces here: a stand-in cluster keeps NetnsCluster's own cut logic
(partition, isolate, heal) and records kills and pauses, so each shape's
effect is checked exactly. The real thing runs in tests/cluster/test_netns.py
and `python -m p2pq.testing.chaos`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from p2pq.faults import CATALOGUE
from p2pq.sim.world import World
from p2pq.testing.chaos import NEMESIS, NetnsTarget, Run
from p2pq.testing.chaos.nemesis import runs_on
from p2pq.testing.netns import NetnsCluster


@dataclass
class Node:
    node_id: str
    running: bool = True
    paused: bool = False


class StandInCluster:
    partition, isolate, heal = NetnsCluster.partition, NetnsCluster.isolate, NetnsCluster.heal

    def __init__(self, size: int = 5) -> None:
        self.size = size
        self.nodes = [Node(f"n{i + 1}") for i in range(size)]
        self.cuts: set[frozenset[int]] = set()
        self.signals: list[tuple[str, int]] = []

    def set_cuts(self, pairs) -> None:
        self.cuts = {frozenset(p) for p in pairs if p[0] != p[1]}

    def kill(self, i: int, sig: int) -> None:
        self.signals.append(("kill", i))
        self.nodes[i].running = False

    def pause(self, i: int) -> None:
        self.nodes[i].paused = True

    def resume(self, i: int) -> None:
        self.nodes[i].paused = False

    def restart(self, i: int) -> None:
        self.nodes[i].running = True


class StandInRun(Run):
    """A Run whose leader is n3 (term 4.n3) with follower n5, over the stand-in cluster."""

    def leader(self, timeout_s: float = 0) -> tuple[int, str]:
        return 2, "4.n3"

    def follower(self, leader: int) -> int | None:
        return 4


def target(seed: int = 3) -> NetnsTarget:
    run = StandInRun(cluster=StandInCluster())
    run.started_at = 0.0
    return NetnsTarget(run, random.Random(seed))


def strike(t: NetnsTarget, name: str):
    t.begin(name)
    return NEMESIS[name].fault(t)


def cut_pairs(t: NetnsTarget) -> set[frozenset[str]]:
    return {frozenset(t.ids[i] for i in pair) for pair in t.run.cluster.cuts}


def test_the_namespace_nemesis_is_the_catalogue_less_what_always_needs_one_way_links():
    assert set(NEMESIS) == (set(CATALOGUE) - {"one-way"}) | {"follower-then-leader"}
    assert runs_on("majorities-ring", 5) and not runs_on("majorities-ring", 7) and not runs_on("one-way", 5)
    assert all(runs_on(name, 5) for name in NEMESIS if name != "majorities-ring")


def test_isolate_leader_cuts_the_agreed_leader_from_everyone_and_times_its_failover():
    t = target()
    undo = strike(t, "isolate-leader")
    assert cut_pairs(t) == {frozenset(("n3", other)) for other in t.ids if other != "n3"}
    assert [(kind, term) for kind, _, term in t.run.depositions] == [("isolate-leader", "4.n3")]
    undo()
    assert t.run.cluster.cuts == set()


def test_halves_and_bridge_cut_what_the_simulator_would_cut_for_the_same_seed():
    for name, kind in (("halves", "halves"), ("bridge", "bridge")):
        t, world = target(seed=11), World(5, seed=1)
        world.rng = random.Random(11)
        strike(t, name)
        CATALOGUE[name].fault(world)
        assert {w.detail for w in world.history.windows if w.kind == kind}  # the world recorded it too
        netns = {frozenset((a, b)) for a in t.ids for b in t.ids if a < b and not t.link_up(a, b)}
        sim = {frozenset((a, b)) for a in world.ids for b in world.ids
               if a < b and not (world.link_up(a, b) and world.link_up(b, a))}
        assert netns == sim and netns, name


def test_bridge_leaves_its_middle_node_connected_to_both_sides():
    t = target(seed=5)
    strike(t, "bridge")
    cut = cut_pairs(t)
    middle = [n for n in t.ids if all(frozenset((n, o)) not in cut for o in t.ids if o != n)]
    assert len(middle) == 1 and len(cut) == 4  # the other four: two pairs across, each way once


def test_a_crash_kills_the_leader_records_the_kill_and_its_undo_restarts_it():
    t = target()
    undo = strike(t, "kill-leader")
    assert t.run.cluster.signals == [("kill", 2)] and not t.run.cluster.nodes[2].running
    assert t.run.faults == {"kill-9": 1} and [n for _, n in t.run.recorder.kills] == ["n3"]
    assert t.run.depositions[0][0] == "kill-leader"
    undo()
    assert t.run.cluster.nodes[2].running


def test_a_brief_pause_deposes_nobody_a_long_one_does():
    t = target()
    strike(t, "pause-leader-briefly")()
    assert t.run.depositions == [] and not t.run.cluster.nodes[2].paused
    undo = strike(t, "pause-leader")
    assert t.run.cluster.nodes[2].paused and len(t.run.depositions) == 1
    undo()


def test_a_five_node_majorities_ring_is_each_node_and_its_two_neighbours():
    t = target()
    strike(t, "majorities-ring")
    heard = {n: {o for o in t.ids if o != n and t.link_up(o, n)} for n in t.ids}
    assert all(len(h) == 2 for h in heard.values()) and len({frozenset(h | {n}) for n, h in heard.items()}) == 5


@pytest.mark.parametrize("name, size", [("majorities-ring", 7), ("one-way", 5)])
def test_a_shape_that_needs_one_way_links_is_refused_not_approximated(name, size):
    run = StandInRun(cluster=StandInCluster(size))
    t = NetnsTarget(run, random.Random(1))
    t.begin(name)
    with pytest.raises(ValueError, match="both ways|one way only"):
        CATALOGUE[name].fault(t)
