"""example-custom: a scenario of your own, as a file: two leaders die back to back.

Copy this file, change the schedule, and run it by path or, from the
repository root, by name:

    p2pq sim simulations/example_custom.py --seeds 200 --mode both
    p2pq sim example-custom --seeds 200

A scenario file defines SCENARIO, a p2pq.sim.scenarios.Scenario: a name, a
function that schedules faults on the World (all chance from world.rng, so
a seed names one schedule), and optionally a duration, world options
(discovery="seed", boot_spread_s=...) and a Workload. The fault library is
p2pq.sim.faults: crash, pause, isolate, halves, bridge, majorities_ring,
one_way, links; hold() strikes and undoes a fault in time, chaos() draws a
random schedule. The runner heals everything at `duration_s`, restarts
crashed nodes from their disks, waits for the queue to drain and checks.
A failing seed prints `p2pq sim simulations/example_custom.py --seed N ...`.
"""

from p2pq.sim.faults import crash, hold, leader_of
from p2pq.sim.scenarios import Scenario
from p2pq.sim.workload import Workload
from p2pq.sim.world import World


def two_leaders_die(world: World) -> None:
    """The leader dies; soon after the new leader serves, it dies too (both come back at the heal)."""
    first = 3.0 + world.rng.uniform(0.0, 1.0)
    hold(world, first, crash(leader_of), None)
    hold(world, first + world.rng.uniform(1.5, 3.0), crash(leader_of), None)


SCENARIO = Scenario("example-custom", two_leaders_die, duration_s=12.0,
                    workload=Workload(rate_per_s=30.0, bursty=True))

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(__file__)
