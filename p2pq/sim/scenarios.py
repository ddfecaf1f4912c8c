"""Fault schedules. Each takes a World and schedules faults on it, all from the world's seed.

Times are virtual seconds. Clients submit from 1.5 s to 8 s (see Workload);
the runner heals everything at 9 s and then waits for the queue to drain.
"""

from __future__ import annotations

from p2pq.core.types import Role

from .world import World


def leader_of(world: World) -> str | None:
    leaders = world.leaders()
    return max(leaders, key=lambda n: world.nodes[n].core.term) if leaders else None


def follower_of(world: World) -> str | None:
    leader = leader_of(world)
    if leader is None:
        return None
    followers = list(world.nodes[leader].core.followers)
    return followers[0] if followers else None


def _at(world: World, t: float, fn) -> None:
    world.call_at(t, fn)


def _jitter(world: World, t: float) -> float:
    return t + world.rng.uniform(0.0, 1.0)


def calm(world: World) -> None:
    """No faults at all: the baseline."""


def leader_crash(world: World) -> None:
    """kill -9 of the leader mid-stream; it comes back (from its disk) later."""
    def crash() -> None:
        victim = leader_of(world)
        if victim:
            world.crash(victim)
            _at(world, world.now + 3.0, lambda: world.restart(victim))
    _at(world, _jitter(world, 3.0), crash)


def follower_crash(world: World) -> None:
    """kill -9 of the follower holding the copy; the leader picks another."""
    def crash() -> None:
        victim = follower_of(world)
        if victim:
            world.crash(victim)
    _at(world, _jitter(world, 3.0), crash)


def follower_then_leader_crash(world: World) -> None:
    """The follower dies, a new follower is chosen and caught up, then the leader dies."""
    def crash_follower() -> None:
        victim = follower_of(world)
        if victim:
            world.crash(victim)
            _at(world, world.now + 0.5, wait_new_follower)

    def wait_new_follower() -> None:
        leader = leader_of(world)
        if leader is None:
            return
        core = world.nodes[leader].core
        progress = [p for p in core.followers.values() if p.acked >= p.snapshot_index > 0]
        if progress or world.now > 8.0:
            world.crash(leader)
        else:
            _at(world, world.now + 0.05, wait_new_follower)

    _at(world, _jitter(world, 2.5), crash_follower)


def isolate_leader(world: World) -> None:
    """Cut the leader off from everyone; both sides go on (available mode); then heal."""
    def cut() -> None:
        victim = leader_of(world)
        if victim:
            world.partition([victim], [n for n in world.ids if n != victim])
            _at(world, world.now + world.rng.uniform(2.0, 4.0), world.heal)
    _at(world, _jitter(world, 3.0), cut)


def seed_discovery(world: World) -> None:
    """No multicast: every node knows only n1 (--peer n1); gossip must do the rest; then the leader dies."""
    leader_crash(world)


seed_discovery.world_options = {"discovery": "seed"}  # type: ignore[attr-defined]


SCENARIOS = {
    "calm": calm,
    "leader-crash": leader_crash,
    "follower-crash": follower_crash,
    "follower-then-leader-crash": follower_then_leader_crash,
    "isolate-leader": isolate_leader,
    "seed-discovery": seed_discovery,
}

__all__ = ["SCENARIOS", "leader_of", "follower_of", "Role"]
