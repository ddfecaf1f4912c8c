"""bridge: Two halves that cannot talk, joined by one node that talks to both
(Jepsen's bridge).

What to expect: Jepsen's bridge: two halves that cannot talk plus one node
that sees both. Non-transitive connectivity: the bridge node hears two
leaders; fencing and bully ranks must settle it.

Run it (the two lines are the same):

    p2pq sim bridge --seeds 1000 --mode both
    python simulations/bridge.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim bridge --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.bridge_partition: it is kept
inside the package so that `p2pq sim bridge` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["bridge"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
