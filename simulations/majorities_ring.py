"""majorities-ring: Every node hears a majority, no two the same one (Jepsen's
partition-majorities-ring).

What to expect: Jepsen's majorities ring: every node hears a majority, no
two nodes the same one (one-way links where windows differ). The hardest
shape for leaders that count heartbeats.

Run it (the two lines are the same):

    p2pq sim majorities-ring --seeds 1000 --mode both
    python simulations/majorities_ring.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim majorities-ring --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.majorities_ring_partition: it is kept
inside the package so that `p2pq sim majorities-ring` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["majorities-ring"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
