"""The scenarios: one fault shape each, registered by name, plus the loader for scenario files.

A scenario schedules its faults on a World; the runner then heals
everything at ``world.fault_end_s``, waits, and checks that the queue
drained. Times are virtual seconds: the cluster elects its first leader at
about 1.2 s, clients submit from 1.5 s until a second before the faults
end, and the faults below start at about 3 s.

The built-in scenarios live here, inside the package, so ``p2pq sim NAME``
works from an installed wheel as well as from a checkout. The files under
``simulations/`` document each shape and run it (``python
simulations/bridge.py --seeds 200``). A researcher's own scenario is a
file that defines ``SCENARIO = Scenario(...)`` (see
``simulations/example_custom.py``); ``p2pq sim path/to/file.py`` runs it,
and so does ``p2pq sim NAME`` from a directory holding
``simulations/NAME.py``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .faults import (any_node, bridge, chaos, clock_skew, crash, follower_of, halves, highest, hold, isolate,
                     leader_of, links, majorities_ring, one_way, pause)
from .links import LinkModel, LogNormal, Spiky, Uniform
from .workload import Workload
from .world import World

FAULTS_START_S = 3.0  # the first leader serves and the stream flows by then


@dataclass(frozen=True)
class Scenario:
    """A named fault schedule and the world it runs in."""

    name: str
    schedule: Callable[[World], None]
    duration_s: float = 10.0            # faults end (and everything heals) at this time
    world_options: dict = field(default_factory=dict)
    workload: Workload | None = None
    restart_at_heal: bool = True        # crashed nodes come back at the final heal
    source: str | None = None           # the file it came from, for replay commands

    def __call__(self, world: World) -> None:
        self.schedule(world)

    @property
    def doc(self) -> str:
        return (self.schedule.__doc__ or "").strip()

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str | None = None, **options) -> Callable[[Callable[[World], None]], Scenario]:
    """Register the decorated schedule as a scenario (options: see Scenario)."""
    def register(schedule: Callable[[World], None]) -> Scenario:
        s = Scenario(name or canonical(schedule.__name__), schedule, **options)
        SCENARIOS[s.name] = s
        return s
    return register


def canonical(name: str) -> str:
    """'isolate_leader', 'Isolate-Leader' and 'isolate-leader' name one scenario."""
    return name.strip().lower().replace("_", "-")


def get(name_or_path: str) -> Scenario:
    """A scenario by name, by file path, or from ./simulations/NAME.py; KeyError if none."""
    path = Path(name_or_path)
    if name_or_path.endswith(".py"):
        if not path.is_file():
            raise KeyError(f"no scenario file {name_or_path}")
        return load_file(path)
    key = canonical(name_or_path)
    if key in SCENARIOS:
        return SCENARIOS[key]
    local = Path("simulations") / f"{key.replace('-', '_')}.py"
    if local.is_file():
        return load_file(local)
    raise KeyError(f"unknown scenario {name_or_path!r}")


def load_file(path: Path) -> Scenario:
    """Import a scenario file; it must define SCENARIO (a Scenario)."""
    spec = importlib.util.spec_from_file_location(f"p2pq_scenario_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise KeyError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, "SCENARIO", None)
    if not isinstance(found, Scenario):
        raise KeyError(f"{path} does not define SCENARIO = Scenario(...)")
    if found.source is None and SCENARIOS.get(found.name) is not found:
        found = replace(found, source=str(path))
    return found


def _t0(world: World) -> float:
    return FAULTS_START_S + world.rng.uniform(0.0, 1.0)


# -- processes --------------------------------------------------------------------------------
@scenario()
def calm(world: World) -> None:
    """No faults at all: the baseline every other shape is compared with."""


@scenario()
def leader_crash(world: World) -> None:
    """kill -9 the leader mid-stream; it restarts from its disk 2-4 s later."""
    hold(world, _t0(world), crash(leader_of), (2.0, 4.0))


@scenario()
def leader_power_off(world: World) -> None:
    """The leader's machine loses power: no refused dials tell, only its silence; back 2-4 s later."""
    hold(world, _t0(world), crash(leader_of, power_off=True), (2.0, 4.0))


@scenario()
def follower_crash(world: World) -> None:
    """kill -9 the follower holding the copy; the leader picks another (back at the heal)."""
    hold(world, _t0(world), crash(follower_of), None)


@scenario()
def crash_restart(world: World) -> None:
    """kill -9 random nodes one after another, each restarted from its disk 1-3 s later."""
    chaos(world, [("crash", crash(any_node))], FAULTS_START_S, world.fault_end_s - 1.0,
          fault_s=(1.0, 3.0), calm_s=(0.5, 2.0))


@scenario()
def follower_then_leader_crash(world: World) -> None:
    """The follower dies, a new follower is chosen and caught up, then the leader dies."""
    def crash_follower() -> None:
        world.at_heal.append(crash(follower_of)(world))
        world.call_at(world.now + 0.5, crash_leader_once_replicated)

    def crash_leader_once_replicated() -> None:
        leader = leader_of(world)
        if leader is None:
            return
        progress = world.nodes[leader].core.followers.values()
        if any(p.acked >= p.snapshot_index > 0 for p in progress) or world.now > world.fault_end_s - 2:
            world.at_heal.append(crash(leader_of)(world))
        else:
            world.call_at(world.now + 0.05, crash_leader_once_replicated)
    world.call_at(FAULTS_START_S - 0.5 + world.rng.uniform(0.0, 1.0), crash_follower)


@scenario()
def pause_leader(world: World) -> None:
    """SIGSTOP the leader for 2-4 s: the others elect a new one, then the stale leader wakes up.

    It wakes holding its old term and everything that queued up meanwhile:
    its heartbeats and appends must be fenced (G3), and what it held merged.
    """
    hold(world, _t0(world), pause(leader_of), (2.0, 4.0))


@scenario()
def flapping_highest(world: World) -> None:
    """Bully's flapping case: the highest-ranked node crashes and restarts in a loop.

    Each time it returns it must catch up before it takes over (L2) instead
    of seizing the lead empty-handed and setting off an election storm.
    """
    chaos(world, [("crash", crash(highest))], FAULTS_START_S, world.fault_end_s - 1.0,
          fault_s=(0.3, 1.5), calm_s=(0.5, 2.0))


@scenario(world_options={"preload": 9_000, "preload_arg_bytes": 1024},
          workload=Workload(p_big=0.05, big_arg_bytes=512 * 1024))
def big_state_restarts(world: World) -> None:
    """A day's table (9,000 finished tasks, 9 MB) and 512 KiB arguments; the highest node restarts twice.

    Each return must catch up by difference (the buckets that differ, in
    byte-capped parts), not by resending the table, and take over once.
    """
    t0 = _t0(world)
    hold(world, t0, crash(highest), (1.0, 2.0))
    hold(world, t0 + 4.0, crash(highest), (1.0, 2.0))


# -- partitions --------------------------------------------------------------------------------
@scenario()
def isolate_node(world: World) -> None:
    """Cut one random node off from everyone for 2-4 s, then heal."""
    hold(world, _t0(world), isolate(any_node), (2.0, 4.0))


@scenario()
def isolate_leader(world: World) -> None:
    """Cut the leader off from everyone for 2-4 s; the majority elects another; then heal."""
    hold(world, _t0(world), isolate(leader_of), (2.0, 4.0))


@scenario()
def isolate_follower_then_crash_leader(world: World) -> None:
    """Isolate the follower, let the leader go on without it, crash the leader, heal.

    The shape that lost Kafka's acknowledged writes (Jepsen, 2013): the
    replica set shrank to the leader alone, the leader acknowledged, died,
    and the stale follower came back to lead. Here the leader must pick a
    new follower before it acknowledges anything (G1).
    """
    def start() -> None:
        heal_partition = isolate(follower_of)(world)
        world.call_at(world.now + world.rng.uniform(1.5, 2.5), lambda: crash_leader(heal_partition))

    def crash_leader(heal_partition) -> None:
        restart = crash(leader_of)(world)
        world.call_at(world.now + world.rng.uniform(1.0, 2.0), heal_partition)
        world.call_at(world.now + world.rng.uniform(2.0, 3.0), restart)
    world.call_at(_t0(world), start)


@scenario()
def random_halves(world: World) -> None:
    """Split the cluster into two random halves for 2-4 s (Jepsen's partition-random-halves)."""
    hold(world, _t0(world), halves, (2.0, 4.0))


@scenario("bridge")
def bridge_partition(world: World) -> None:
    """Two halves that cannot talk, joined by one node that talks to both (Jepsen's bridge)."""
    hold(world, _t0(world), bridge, (2.0, 4.0))


@scenario("majorities-ring")
def majorities_ring_partition(world: World) -> None:
    """Every node hears a majority, no two the same one (Jepsen's partition-majorities-ring)."""
    hold(world, _t0(world), majorities_ring, (2.0, 4.0))


@scenario("one-way")
def one_way_partition(world: World) -> None:
    """The leader hears nobody, or nobody hears it (drawn per seed), for 2-4 s."""
    hold(world, _t0(world), one_way(leader_of), (2.0, 4.0))


# -- links ----------------------------------------------------------------------------------------
SLOW = LinkModel(latency=LogNormal(median_s=0.02, sigma=1.0))
LOSSY = LinkModel(latency=Uniform(0.0005, 0.01), drop=0.1, duplicate=0.05, reorder=True)
STALLS = LinkModel(latency=Spiky(spike_s=1.5, p_spike=0.02))


@scenario()
def slow_links(world: World) -> None:
    """Every link turns slow and long-tailed (lognormal, median 20 ms) for 3-5 s."""
    hold(world, _t0(world), links(SLOW, "slow"), (3.0, 5.0))


@scenario()
def lossy_links(world: World) -> None:
    """Every link drops 10 %, duplicates 5 % and reorders messages for 3-5 s."""
    hold(world, _t0(world), links(LOSSY, "lossy"), (3.0, 5.0))


@scenario()
def stalling_links(world: World) -> None:
    """2 % of messages stall up to 1.5 s, longer than the failure timeout, for 3-5 s."""
    hold(world, _t0(world), links(STALLS, "stalls"), (3.0, 5.0))


# -- clocks -------------------------------------------------------------------------------------
@scenario()
def clock_skew_crashes(world: World) -> None:
    """Clocks drift 25 % fast or slow and step +-10 s among crashes, restarts and partitions."""
    chaos(world, [("skew any", clock_skew(any_node)), ("skew leader", clock_skew(leader_of)),
                  ("skew any", clock_skew(any_node)), ("crash leader", crash(leader_of)),
                  ("crash any", crash(any_node)), ("isolate leader", isolate(leader_of)),
                  ("halves", halves), ("pause leader", pause(leader_of))],
          FAULTS_START_S, world.fault_end_s - 1.0, fault_s=(1.0, 3.0), calm_s=(0.5, 2.0))


# -- everything at once ---------------------------------------------------------------------------
CHAOS_MENU = [
    ("crash leader", crash(leader_of)), ("crash any", crash(any_node)),
    ("pause leader", pause(leader_of)), ("pause any", pause(any_node)),
    ("halves", halves), ("isolate leader", isolate(leader_of)), ("isolate any", isolate(any_node)),
    ("bridge", bridge), ("ring", majorities_ring), ("one-way", one_way(leader_of)),
    ("slow", links(SLOW, "slow")), ("lossy", links(LOSSY, "lossy")),
]


@scenario("chaos", duration_s=30.0)
def chaos_schedule(world: World) -> None:
    """Random faults from every shape above, alternating with calm periods; then heal, wait, drain."""
    chaos(world, CHAOS_MENU, FAULTS_START_S - 1.0, world.fault_end_s - 0.5)


@scenario(world_options={"discovery": "seed"})
def seed_discovery(world: World) -> None:
    """No multicast: every node knows only n1 (--peer n1), gossip does the rest; the leader dies."""
    hold(world, _t0(world), crash(leader_of), (2.0, 4.0))


__all__ = ["SCENARIOS", "Scenario", "scenario", "get", "load_file", "canonical", "leader_of",
           "follower_of"]
