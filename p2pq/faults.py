"""The fault catalogue: Jepsen's shapes, once, for the simulator and for real nodes.

A fault strikes a ``FaultTarget`` now and returns the function that ends
it. Two targets implement the interface: the simulated world
(``sim/world.py``, driven by the scenarios of ``sim/scenarios.py``) and a
cluster of real ``p2pq node`` processes in network namespaces
(``testing/chaos/nemesis.py``). Every choice (which node, which half) is
drawn from ``target.rng``, so a seed names one schedule.

Partitions follow Jepsen's nemeses (jepsen.nemesis): random halves, isolate
one node, bridge (two halves joined by one node that hears both),
majorities ring (every node hears a majority, no two the same one) and
one-way partitions, where a node hears without being heard or the reverse.
A fault that takes the leader away (its process, or a majority it can
reach both ways) says so (``lost_leader``): that starts a failover, which
both harnesses time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol

import networkx as nx

Undo = Callable[[], None]


class FaultTarget(Protocol):
    """What a fault acts on, in the simulated world's words."""

    rng: random.Random
    ids: list[str]  # every node, up or down

    def leader(self) -> str | None: ...              # the leader most nodes follow
    def follower(self) -> str | None: ...            # its first follower (it holds the copy)
    def highest(self) -> str: ...                     # the node of highest rank (the bully winner)
    def running(self, node: str) -> bool: ...         # up and not paused
    def is_up(self, node: str) -> bool: ...           # its process exists (paused or not)
    def link_up(self, src: str, dst: str) -> bool: ...  # `dst` hears `src`
    def opened(self, kind: str, detail: str) -> Undo: ...  # record a fault; the result closes its window
    def lost_leader(self, leader: str) -> None: ...   # record that a failover starts now
    def crash(self, node: str, power_off: bool = False) -> None: ...
    def bring_back(self, node: str, keep_disk: bool = True) -> None: ...  # restart after a crash
    def pause(self, node: str) -> None: ...
    def resume(self, node: str) -> None: ...
    def partition(self, a: list[str], b: list[str]) -> None: ...
    def set_topology(self, graph: nx.DiGraph, label: str) -> None: ...  # edge (a, b): b hears a
    def cut(self, src: str, dst: str, both_ways: bool = True) -> None: ...
    def heal(self) -> None: ...


Pick = Callable[[FaultTarget], "str | None"]
Fault = Callable[[FaultTarget], Undo]


# -- whom to strike ------------------------------------------------------------------
def leader_of(target: FaultTarget) -> str | None:
    return target.leader()


def follower_of(target: FaultTarget) -> str | None:
    return target.follower()


def any_node(target: FaultTarget) -> str | None:
    running = [n for n in target.ids if target.running(n)]
    return target.rng.choice(running) if running else None


def highest(target: FaultTarget) -> str:
    return target.highest()


# -- bookkeeping ---------------------------------------------------------------------
def _leader_loses(target: FaultTarget, cut_off: Callable[[str], bool]) -> None:
    """Record a leader loss if the fault about to strike takes the current leader away."""
    leader = target.leader()
    if leader is not None and cut_off(leader):
        target.lost_leader(leader)


def _leader_lost_majority(target: FaultTarget) -> None:
    """After a topology change: can the leader still talk both ways with a majority?"""
    def cut_off(leader: str) -> bool:
        both_ways = sum(1 for n in target.ids if n != leader
                        and target.link_up(leader, n) and target.link_up(n, leader))
        return both_ways + 1 < len(target.ids) // 2 + 1
    _leader_loses(target, cut_off)


def nothing() -> None:
    """The undo of a fault that found nothing to strike."""


# -- processes ------------------------------------------------------------------------
def crash(pick: Pick, keep_disk: bool = True, power_off: bool = False) -> Fault:
    """kill -9 the picked node (its machine refuses dials to it), or with
    `power_off` cut its machine's power (dials go unanswered: only the
    failure timeout tells); undo restarts it (from its disk unless keep_disk
    is False)."""
    def apply(target: FaultTarget) -> Undo:
        node = pick(target)
        if node is None or not target.is_up(node):
            return nothing
        _leader_loses(target, lambda leader: leader == node)
        close = target.opened("power_off" if power_off else "crash", node)
        target.crash(node, power_off=power_off)

        def undo() -> None:
            target.bring_back(node, keep_disk)
            close()
        return undo
    return apply


def pause(pick: Pick, deposes: bool = True) -> Fault:
    """SIGSTOP the picked node; undo resumes it (a stale leader wakes up).

    A pause shorter than the failure timeout deposes nobody: say so with
    ``deposes=False`` and no failover is timed from it.
    """
    def apply(target: FaultTarget) -> Undo:
        node = pick(target)
        if node is None:
            return nothing
        if deposes:
            _leader_loses(target, lambda leader: leader == node)
        close = target.opened("pause", node)
        target.pause(node)

        def undo() -> None:
            target.resume(node)
            close()
        return undo
    return apply


# -- partitions ---------------------------------------------------------------------------
def _partitioned(target: FaultTarget, kind: str, detail: str, change: Callable[[], None]) -> Undo:
    close = target.opened(kind, detail)
    change()
    _leader_lost_majority(target)

    def undo() -> None:
        target.heal()
        close()
    return undo


def isolate(pick: Pick) -> Fault:
    """Cut the picked node off from everyone else."""
    def apply(target: FaultTarget) -> Undo:
        node = pick(target)
        if node is None:
            return nothing
        rest = [n for n in target.ids if n != node]
        return _partitioned(target, "isolate", node, lambda: target.partition([node], rest))
    return apply


def halves(target: FaultTarget) -> Undo:
    """Random halves: a shuffled cluster split in two (the smaller half a minority)."""
    nodes = target.rng.sample(target.ids, len(target.ids))
    a, b = nodes[:len(nodes) // 2], nodes[len(nodes) // 2:]
    return _partitioned(target, "halves", f"{sorted(a)} | {sorted(b)}", lambda: target.partition(a, b))


def bridge(target: FaultTarget) -> Undo:
    """Two halves that cannot talk, and one node that talks to both."""
    nodes = target.rng.sample(target.ids, len(target.ids))
    middle, rest = nodes[0], nodes[1:]
    a, b = rest[:len(rest) // 2], rest[len(rest) // 2:]
    graph = nx.DiGraph()
    graph.add_nodes_from(target.ids)
    for side in (a, b):
        graph.add_edges_from((x, y) for x in side + [middle] for y in side + [middle] if x != y)
    detail = f"{sorted(a)} <{middle}> {sorted(b)}"
    return _partitioned(target, "bridge", detail, lambda: target.set_topology(graph, "bridge"))


def majorities_ring(target: FaultTarget) -> Undo:
    """Every node hears a majority, and no two nodes hear the same one (Jepsen's grudge).

    The nodes sit on a shuffled ring; each hears the majority-sized window of
    the ring around itself, so links are one-way where windows differ.
    """
    n = len(target.ids)
    if n < 3:
        return halves(target)
    ring = target.rng.sample(target.ids, n)
    size = n // 2 + 1
    graph = nx.DiGraph()
    graph.add_nodes_from(target.ids)
    for i, listener in enumerate(ring):
        window = [ring[(i + k) % n] for k in range(-((size - 1) // 2), size // 2 + 1)]
        graph.add_edges_from((speaker, listener) for speaker in window if speaker != listener)
    return _partitioned(target, "ring", " ".join(ring), lambda: target.set_topology(graph, "ring"))


def one_way(pick: Pick, direction: str | None = None) -> Fault:
    """The picked node hears nobody ('deaf') or nobody hears it ('mute'); random if None."""
    def apply(target: FaultTarget) -> Undo:
        node = pick(target)
        if node is None:
            return nothing
        way = direction or target.rng.choice(["deaf", "mute"])
        others = [n for n in target.ids if n != node]

        def change() -> None:
            for other in others:
                src, dst = (other, node) if way == "deaf" else (node, other)
                target.cut(src, dst, both_ways=False)
        return _partitioned(target, "one-way", f"{node} {way}", change)
    return apply


# -- the catalogue ---------------------------------------------------------------------------
def _never(nodes: int) -> bool:
    return False


def _always(nodes: int) -> bool:
    return True


def _ring_is_one_way(nodes: int) -> bool:
    """A majorities ring hears a window around each node: symmetric when the majority is odd."""
    return nodes >= 3 and (nodes // 2 + 1) % 2 == 0


@dataclass(frozen=True)
class Shape:
    """A named fault, what it does, how long a real run holds it, and what a target must be able to do."""

    name: str
    summary: str
    fault: Fault
    hold_s: tuple[float, float] = (2.0, 8.0)
    # Whether, in a cluster of n nodes, it needs links that carry one direction only
    # (a namespace cluster's cuts drop both: a TCP connection needs both).
    one_way_links: Callable[[int], bool] = _never


CATALOGUE: dict[str, Shape] = {shape.name: shape for shape in (
    Shape("kill-leader", "kill -9 the leader; it restarts from its disk", crash(leader_of), (2.0, 6.0)),
    Shape("kill-any", "kill -9 a random node; it restarts from its disk", crash(any_node), (2.0, 6.0)),
    Shape("kill-highest", "kill -9 the highest-ranked node (bully's flapping case)", crash(highest), (1.0, 3.0)),
    Shape("pause-leader", "SIGSTOP the leader past the failure timeout; it wakes up deposed",
          pause(leader_of), (1.5, 6.0)),
    Shape("pause-leader-briefly", "SIGSTOP the leader for less than the failure timeout; nobody is deposed",
          pause(leader_of, deposes=False), (0.3, 0.9)),
    Shape("isolate-leader", "cut the leader off from everyone", isolate(leader_of)),
    Shape("isolate-node", "cut a random node off from everyone", isolate(any_node)),
    Shape("isolate-follower", "cut the follower that holds the copy off from everyone", isolate(follower_of)),
    Shape("halves", "random halves (Jepsen's partition-random-halves)", halves),
    Shape("bridge", "two halves joined by one node that hears both (Jepsen's bridge)", bridge),
    Shape("majorities-ring", "every node hears a majority, no two the same (Jepsen's majorities ring)",
          majorities_ring, one_way_links=_ring_is_one_way),
    Shape("one-way", "the leader hears nobody, or nobody hears it", one_way(leader_of), one_way_links=_always),
)}
