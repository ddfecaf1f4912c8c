"""The nemesis: the fault catalogue's shapes (p2pq/faults.py) against real nodes, one at a time.

``NetnsTarget`` is the catalogue's ``FaultTarget`` for a namespace cluster,
as the simulated world is for the simulator: the same shape picks the same
kind of victim and the same kind of partition in both. Cuts between
namespaces are nftables rules that drop both directions (a TCP connection
needs both), so the shapes that need one-way links are the simulator's
only: one-way partitions always, the majorities ring where its windows are
lopsided (7 nodes; at 5 each node hears its two neighbours, both ways).
"""

from __future__ import annotations

import random
import signal
import time
from typing import Callable

import networkx as nx

from p2pq.faults import CATALOGUE, Shape, crash, isolate, leader_of, nothing

from ..cluster import wait_for
from .run import Run


SIZES = range(3, 21)  # the namespace clusters the chaos command builds


class NetnsTarget:
    """A running `Run`'s cluster, in the catalogue's terms (node ids, not indexes)."""

    def __init__(self, run: Run, rng: random.Random) -> None:
        self.run, self.rng = run, rng
        self.ids = [node.node_id for node in run.cluster.nodes]
        self.shape = "fault"  # the name faults are recorded under (the shape being struck)
        self._leader: tuple[int, str] | None = None

    def begin(self, shape: str) -> None:
        """A new fault: the leader every node agrees on now (and its term) is the one it strikes."""
        self.shape = shape
        self._leader = self.run.leader()

    def _index(self, node: str) -> int:
        return self.ids.index(node)

    # -- looking ----------------------------------------------------------------------
    def leader(self) -> str | None:
        """The leader agreed before the fault (asking again, mid-partition, would find none)."""
        return self.ids[self._leader[0]]

    def follower(self) -> str | None:
        follower = self.run.follower(self._leader[0])
        return None if follower is None else self.ids[follower]

    def highest(self) -> str:
        return self.ids[-1]  # node i has priority i + 1

    def running(self, node: str) -> bool:
        n = self.run.cluster.nodes[self._index(node)]
        return n.running and not n.paused

    def is_up(self, node: str) -> bool:
        return self.run.cluster.nodes[self._index(node)].running

    def link_up(self, src: str, dst: str) -> bool:
        return src == dst or frozenset((self._index(src), self._index(dst))) not in self.run.cluster.cuts

    # -- recording --------------------------------------------------------------------
    def opened(self, kind: str, detail: str) -> Callable[[], None]:
        crashed = kind == "crash"
        self.run.note_fault("kill-9" if crashed else self.shape, detail, node=detail if crashed else None)
        return nothing  # the recorder notes the heal (Run.heal_all) when the shape ends

    def lost_leader(self, leader: str) -> None:
        self.run.deposed(self.shape, leader, self._leader[1])

    # -- striking ---------------------------------------------------------------------
    def crash(self, node: str, power_off: bool = False) -> None:
        if power_off:
            raise NotImplementedError("a namespace cluster kills processes; it cannot cut a machine's power")
        self.run.cluster.kill(self._index(node), signal.SIGKILL)

    def bring_back(self, node: str, keep_disk: bool = True) -> None:
        if not keep_disk:
            raise NotImplementedError("a restarted node keeps its data directory")
        self.run.restart(self._index(node))

    def pause(self, node: str) -> None:
        self.run.cluster.pause(self._index(node))

    def resume(self, node: str) -> None:
        self.run.resume(self._index(node))

    def partition(self, a: list[str], b: list[str]) -> None:
        self.run.cluster.partition([self._index(n) for n in a], [self._index(n) for n in b])

    def set_topology(self, graph: nx.DiGraph, label: str) -> None:
        """Who hears whom; every pair that does not hear each other both ways is cut."""
        cuts = []
        for i, a in enumerate(self.ids):
            for j, b in enumerate(self.ids[i + 1:], i + 1):
                ab, ba = graph.has_edge(a, b), graph.has_edge(b, a)
                if ab != ba:
                    raise ValueError(f"{label}: {a} and {b} would hear each other one way only; "
                                     "a namespace cluster cuts links both ways")
                if not ab:
                    cuts.append((i, j))
        self.run.cluster.set_cuts(cuts)

    def cut(self, src: str, dst: str, both_ways: bool = True) -> None:
        if not both_ways:
            raise ValueError("a namespace cluster cuts links both ways")
        pair = (self._index(src), self._index(dst))
        self.run.cluster.set_cuts([tuple(p) for p in self.run.cluster.cuts] + [pair])

    def heal(self) -> None:
        self.run.cluster.heal()


def follower_then_leader(target: NetnsTarget) -> Callable[[], None]:
    """Isolate the follower, wait for the leader to choose another, then kill the leader.

    The shape that lost Kafka's acknowledged writes (Jepsen, 2013): the
    leader must have a new follower before it acknowledges anything (G1).
    """
    run, (leader, _) = target.run, target._leader
    follower = run.follower(leader)
    heal = isolate(lambda t: t.follower())(target)
    wait_for(lambda: run.follower(leader) not in (None, follower), 15, "a new follower")
    time.sleep(target.rng.uniform(0.5, 2))
    restart = crash(leader_of)(target)

    def undo() -> None:
        restart()
        heal()
    return undo


# The shapes a namespace cluster can take (at some size: see runs_on), and one schedule of two.
NEMESIS: dict[str, Shape] = {
    **{name: shape for name, shape in CATALOGUE.items() if not all(shape.one_way_links(n) for n in SIZES)},
    "follower-then-leader": Shape("follower-then-leader", "isolate the follower; once the leader chose "
                                  "another, kill the leader (Kafka's lost writes)", follower_then_leader, (2.0, 6.0)),
}


def runs_on(name: str, nodes: int) -> bool:
    """Whether a namespace cluster of `nodes` can take the shape `name` (its cuts are two-way)."""
    return name in NEMESIS and not NEMESIS[name].one_way_links(nodes)


def chaos(run: Run, seconds: float, rng: random.Random, names: list[str]) -> None:
    """One fault at a time until the time is up; each is healed and settled before the next."""
    target = NetnsTarget(run, rng)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = rng.choice(names)
        shape = NEMESIS[name]
        undo = nothing
        try:
            target.begin(name)
            undo = shape.fault(target)
            time.sleep(rng.uniform(*shape.hold_s))
        except TimeoutError as exc:
            run.problems.append(f"{name}: {exc}")
            run.log(f"  !! {run.problems[-1]}")
        undo()
        run.heal_all()
        run.settle(name)
        time.sleep(rng.uniform(0.5, 2.0))
