"""one-way: The leader hears nobody, or nobody hears it (drawn per seed), for
2-4 s.

What to expect: The leader is deaf (hears nobody, but is heard) or mute
(heard by nobody, but hears). A deaf leader declares everyone dead; a mute
leader is deposed without knowing it until a newer term reaches it.

Run it (the two lines are the same):

    p2pq sim one-way --seeds 1000 --mode both
    python simulations/one_way.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim one-way --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.one_way_partition: it is kept
inside the package so that `p2pq sim one-way` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["one-way"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
