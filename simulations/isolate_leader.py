"""isolate-leader: Cut the leader off from everyone for 2-4 s; the majority
elects another; then heal.

What to expect: The leader alone: the majority elects another leader; the
old one keeps its role but cannot replicate. Tasks it was running are re-run
by the new side: duplicates, counted (G2).

Run it (the two lines are the same):

    p2pq sim isolate-leader --seeds 1000 --mode both
    python simulations/isolate_leader.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim isolate-leader --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.isolate_leader: it is kept
inside the package so that `p2pq sim isolate-leader` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["isolate-leader"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
