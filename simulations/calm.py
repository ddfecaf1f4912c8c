"""calm: No faults at all: the baseline every other shape is compared with.

What to expect: Nothing to survive: lost, unexpected and duplicated are 0,
one term, no failover. Use it as the baseline for throughput, latency and
message counts.

Run it (the two lines are the same):

    p2pq sim calm --seeds 1000 --mode both
    python simulations/calm.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim calm --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.calm: it is kept
inside the package so that `p2pq sim calm` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["calm"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
