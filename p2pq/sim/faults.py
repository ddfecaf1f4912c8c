"""The fault library: crashes, pauses, partitions as Jepsen names them, link faults.

A fault is a function ``apply(world) -> undo``: it strikes now and returns
the function that ends it. Scenarios compose them in time with ``hold`` and
``chaos``. Every choice (which node, which half, how long) is drawn from
``world.rng``, the faults' own stream of the seed, so a seed names one
schedule. Each fault opens a window in the history (the shaded bands of the
timeline figure) and, when it takes the leader away from a majority,
records a leader loss (the start of a failover).

Partitions follow Jepsen's nemeses (jepsen.nemesis): random halves, isolate
one node, bridge (two halves joined by one node that sees both), majorities
ring (every node sees a majority, no two see the same one) and one-way
partitions, where a node hears without being heard or the reverse.
"""

from __future__ import annotations

from typing import Callable

import networkx as nx

from .links import LinkModel
from .world import World

Undo = Callable[[], None]
Fault = Callable[[World], Undo]
Pick = Callable[[World], "str | None"]


# -- whom to strike ------------------------------------------------------------------
def leader_of(world: World) -> str | None:
    """The leader most nodes follow (ties: the newest term).

    Not simply the newest term: in available mode a node cut off alone
    elects itself, and striking that one would miss the leader that serves.
    """
    leaders = world.leaders()
    if not leaders:
        return None
    terms = [n.core.term for n in world.nodes.values() if n.alive]

    def weight(node: str) -> tuple:
        term = world.nodes[node].core.term
        return terms.count(term), term
    return max(leaders, key=weight)


def follower_of(world: World) -> str | None:
    """The first follower of the current leader (it holds the copy, G1)."""
    leader = leader_of(world)
    followers = list(world.nodes[leader].core.followers) if leader else []
    return followers[0] if followers else None


def any_node(world: World) -> str | None:
    alive = [n for n in world.ids if world.nodes[n].alive and not world.nodes[n].paused]
    return world.rng.choice(alive) if alive else None


def highest(world: World) -> str:
    """The bully winner: the node of highest rank."""
    return max(world.ids, key=lambda n: (world.nodes[n].priority, n))


# -- bookkeeping ---------------------------------------------------------------------
def _open(world: World, kind: str, detail: str = "") -> Callable[[], None]:
    window = world.history.open_window(world.now, kind, detail)

    def close() -> None:
        if window.end_s is None:
            window.end_s = world.now
    return close


def _leader_loses(world: World, cut_off: Callable[[str], bool]) -> None:
    """Record a leader loss if the fault about to strike takes the current leader away."""
    leader = leader_of(world)
    if leader is not None and cut_off(leader):
        world.history.leader_losses.append((world.now, leader, str(world.nodes[leader].core.term)))


def _leader_lost_majority(world: World) -> None:
    """After a topology change: can the leader still talk both ways with a majority?"""
    def cut_off(leader: str) -> bool:
        both_ways = sum(1 for n in world.ids if n != leader
                        and world.link_up(leader, n) and world.link_up(n, leader))
        return both_ways + 1 < len(world.ids) // 2 + 1
    _leader_loses(world, cut_off)


def _noop() -> None:
    pass


# -- processes ------------------------------------------------------------------------
def crash(pick: Pick, keep_disk: bool = True, power_off: bool = False) -> Fault:
    """kill -9 the picked node (its machine refuses dials to it), or with
    `power_off` cut its machine's power (dials go unanswered: only the
    failure timeout tells); undo restarts it (from its disk unless keep_disk
    is False)."""
    def apply(world: World) -> Undo:
        node = pick(world)
        if node is None or not world.nodes[node].alive:
            return _noop
        _leader_loses(world, lambda leader: leader == node)
        close = _open(world, "power_off" if power_off else "crash", node)
        world.crash(node, power_off=power_off)

        def undo() -> None:
            if not world.keep_crashed_down:
                world.restart(node, keep_disk)
            close()
        return undo
    return apply


def pause(pick: Pick) -> Fault:
    """SIGSTOP the picked node; undo resumes it (a stale leader wakes up)."""
    def apply(world: World) -> Undo:
        node = pick(world)
        if node is None:
            return _noop
        _leader_loses(world, lambda leader: leader == node)
        close = _open(world, "pause", node)
        world.pause(node)

        def undo() -> None:
            world.resume(node)
            close()
        return undo
    return apply


# -- clocks ------------------------------------------------------------------------------
def clock_skew(pick: Pick, rates: tuple[float, ...] = (0.8, 1.25), step_s: float = 10.0) -> Fault:
    """The picked node's clock runs fast or slow and its wall clock steps +-step_s; undo: true speed.

    The step stays (a restart later boots the node at the stepped time, so
    its timestamps differ from the others'); the rates stay within what the
    leases allow (docs/guarantees.md, G3: rates may differ by less than 2x).
    """
    def apply(world: World) -> Undo:
        node = pick(world)
        if node is None:
            return _noop
        rate = world.rng.choice(rates)
        close = _open(world, "clock", f"{node} x{rate:g}")
        world.step_wall_clock(node, world.rng.choice((-step_s, step_s)))
        world.set_clock_rate(node, rate)

        def undo() -> None:
            world.set_clock_rate(node, 1.0)
            close()
        return undo
    return apply


# -- partitions ---------------------------------------------------------------------------
def _partitioned(world: World, kind: str, detail: str, change: Callable[[], None]) -> Undo:
    close = _open(world, kind, detail)
    change()
    _leader_lost_majority(world)

    def undo() -> None:
        world.heal()
        close()
    return undo


def isolate(pick: Pick) -> Fault:
    """Cut the picked node off from everyone else."""
    def apply(world: World) -> Undo:
        node = pick(world)
        if node is None:
            return _noop
        rest = [n for n in world.ids if n != node]
        return _partitioned(world, "isolate", node, lambda: world.partition([node], rest))
    return apply


def halves(world: World) -> Undo:
    """Random halves: a shuffled cluster split in two (the smaller half a minority)."""
    nodes = world.rng.sample(world.ids, len(world.ids))
    a, b = nodes[:len(nodes) // 2], nodes[len(nodes) // 2:]
    return _partitioned(world, "halves", f"{sorted(a)} | {sorted(b)}", lambda: world.partition(a, b))


def bridge(world: World) -> Undo:
    """Two halves that cannot talk, and one node that talks to both."""
    nodes = world.rng.sample(world.ids, len(world.ids))
    middle, rest = nodes[0], nodes[1:]
    a, b = rest[:len(rest) // 2], rest[len(rest) // 2:]
    graph = nx.DiGraph()
    graph.add_nodes_from(world.ids)
    for side in (a, b):
        graph.add_edges_from((x, y) for x in side + [middle] for y in side + [middle] if x != y)
    detail = f"{sorted(a)} <{middle}> {sorted(b)}"
    return _partitioned(world, "bridge", detail, lambda: world.set_topology(graph, "bridge"))


def majorities_ring(world: World) -> Undo:
    """Every node hears a majority, and no two nodes hear the same one (Jepsen's grudge).

    The nodes sit on a shuffled ring; each hears the majority-sized window of
    the ring around itself, so links are one-way where windows differ.
    """
    n = len(world.ids)
    if n < 3:
        return halves(world)
    ring = world.rng.sample(world.ids, n)
    size = n // 2 + 1
    graph = nx.DiGraph()
    graph.add_nodes_from(world.ids)
    for i, listener in enumerate(ring):
        window = [ring[(i + k) % n] for k in range(-((size - 1) // 2), size // 2 + 1)]
        graph.add_edges_from((speaker, listener) for speaker in window if speaker != listener)
    return _partitioned(world, "ring", " ".join(ring), lambda: world.set_topology(graph, "ring"))


def one_way(pick: Pick, direction: str | None = None) -> Fault:
    """The picked node hears nobody ('deaf') or nobody hears it ('mute'); random if None."""
    def apply(world: World) -> Undo:
        node = pick(world)
        if node is None:
            return _noop
        way = direction or world.rng.choice(["deaf", "mute"])
        others = [n for n in world.ids if n != node]

        def change() -> None:
            for other in others:
                src, dst = (other, node) if way == "deaf" else (node, other)
                world.cut(src, dst, both_ways=False)
        return _partitioned(world, "one-way", f"{node} {way}", change)
    return apply


# -- links ---------------------------------------------------------------------------------
def links(model: LinkModel, label: str) -> Fault:
    """Every link behaves like `model` (latency, loss, duplication, reordering) until undone."""
    def apply(world: World) -> Undo:
        close = _open(world, label, repr(model))
        world.set_link(model)

        def undo() -> None:
            world.heal_links()
            close()
        return undo
    return apply


# -- composing faults in time ------------------------------------------------------------
def hold(world: World, at_s: float, fault: Fault, for_s: float | tuple[float, float] | None) -> None:
    """Strike at `at_s` and undo `for_s` seconds later (drawn if a range; None: at the final heal)."""
    def strike() -> None:
        undo = fault(world)
        if for_s is None:
            world.at_heal.append(undo)
            return
        span = world.rng.uniform(*for_s) if isinstance(for_s, tuple) else for_s
        world.call_at(world.now + span, undo)
    world.call_at(at_s, strike)


def chaos(world: World, menu: list[tuple[str, Fault]], start_s: float, end_s: float,
          fault_s: tuple[float, float] = (0.5, 3.0), calm_s: tuple[float, float] = (0.5, 2.5)) -> None:
    """Alternate a random fault and a calm period until `end_s`; the runner then heals and drains."""
    def next_fault() -> None:
        if world.now >= end_s:
            return
        _, fault = world.rng.choice(menu)
        undo = fault(world)
        span = min(world.rng.uniform(*fault_s), max(0.0, end_s - world.now))
        world.call_at(world.now + span, lambda: calm(undo))

    def calm(undo: Undo) -> None:
        undo()
        world.call_at(world.now + world.rng.uniform(*calm_s), next_fault)
    world.call_at(start_s, next_fault)

