"""isolate-node: Cut one random node off from everyone for 2-4 s, then heal.

What to expect: A random node alone: if it is the leader, the majority fails
over; if not, in available mode it elects itself on its side (split brain,
counted in multi_leader_s) but cannot acknowledge alone (`unreplicated`).

Run it (the two lines are the same):

    p2pq sim isolate-node --seeds 1000 --mode both
    python simulations/isolate_node.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim isolate-node --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.isolate_node: it is kept
inside the package so that `p2pq sim isolate-node` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["isolate-node"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
