"""lossy-links: Every link drops 10 %, duplicates 5 % and reorders messages for
3-5 s.

What to expect: 10 % loss, 5 % duplication, reordering. Replication repairs
gaps (append acks with ok=false, resends after two heartbeats).

Run it (the two lines are the same):

    p2pq sim lossy-links --seeds 1000 --mode both
    python simulations/lossy_links.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim lossy-links --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.lossy_links: it is kept
inside the package so that `p2pq sim lossy-links` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["lossy-links"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
