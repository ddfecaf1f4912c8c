"""seed-discovery: No multicast: every node knows only n1 (--peer n1), gossip
does the rest; the leader dies.

What to expect: No multicast: every node knows only n1 (`--peer n1`).
Membership must spread by gossip; then the leader dies.

Run it (the two lines are the same):

    p2pq sim seed-discovery --seeds 1000 --mode both
    python simulations/seed_discovery.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim seed-discovery --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.seed_discovery: it is kept
inside the package so that `p2pq sim seed-discovery` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["seed-discovery"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
