"""The simulator's faults: the catalogue's shapes (p2pq/faults.py), clocks and links, composed in time.

A fault is a function ``apply(world) -> undo``: it strikes now and returns
the function that ends it. The crashes, pauses and Jepsen partitions come
from the one catalogue the namespace chaos run uses too (``p2pq/faults.py``;
the world is their ``FaultTarget``); this module adds what only a simulated
world can do (skewed clocks, link models) and composes faults in time with
``hold`` and ``chaos``. Every choice is drawn from ``world.rng``, the
faults' own stream of the seed, so a seed names one schedule. Each fault
opens a window in the history (the shaded bands of the timeline figure) and,
when it takes the leader away from a majority, records a leader loss (the
start of a failover).
"""

from __future__ import annotations

from typing import Callable

from p2pq.faults import (any_node, bridge, crash, follower_of, halves, highest, isolate, leader_of, majorities_ring,
                         nothing, one_way, pause)

from .links import LinkModel
from .world import World

Undo = Callable[[], None]
Fault = Callable[[World], Undo]
Pick = Callable[[World], "str | None"]


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
            return nothing
        rate = world.rng.choice(rates)
        close = world.opened("clock", f"{node} x{rate:g}")
        world.step_wall_clock(node, world.rng.choice((-step_s, step_s)))
        world.set_clock_rate(node, rate)

        def undo() -> None:
            world.set_clock_rate(node, 1.0)
            close()
        return undo
    return apply


# -- links ---------------------------------------------------------------------------------
def links(model: LinkModel, label: str) -> Fault:
    """Every link behaves like `model` (latency, loss, duplication, reordering) until undone."""
    def apply(world: World) -> Undo:
        close = world.opened(label, repr(model))
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


__all__ = ["Fault", "Pick", "Undo", "any_node", "bridge", "chaos", "clock_skew", "crash", "follower_of", "halves",
           "highest", "hold", "isolate", "leader_of", "links", "majorities_ring", "one_way", "pause"]
