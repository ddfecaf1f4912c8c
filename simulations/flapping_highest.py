"""flapping-highest: Bully's flapping case: the highest-ranked node crashes and
restarts in a loop.

Each time it returns it must catch up before it takes over (L2) instead of
seizing the lead empty-handed and setting off an election storm.

What to expect: Bully's flapping case. The highest-ranked node keeps dying
and returning; each return must not set off an election storm, and it takes
over only after catching up. Watch `terms` and the election messages.

Run it (the two lines are the same):

    p2pq sim flapping-highest --seeds 1000 --mode both
    python simulations/flapping_highest.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim flapping-highest --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.flapping_highest: it is kept
inside the package so that `p2pq sim flapping-highest` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["flapping-highest"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
