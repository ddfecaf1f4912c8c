"""random-halves: Split the cluster into two random halves for 2-4 s (Jepsen's
partition-random-halves).

What to expect: Jepsen's partition-random-halves. With 5 nodes: 2 against 3.
Available mode: both halves elect and serve (the minority cannot replicate
outside itself, so it serves only if it has two nodes). Quorum mode: only
the majority half serves.

Run it (the two lines are the same):

    p2pq sim random-halves --seeds 1000 --mode both
    python simulations/random_halves.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim random-halves --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.random_halves: it is kept
inside the package so that `p2pq sim random-halves` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["random-halves"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
