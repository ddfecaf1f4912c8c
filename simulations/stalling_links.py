"""stalling-links: 2 % of messages stall up to 1.5 s, longer than the failure
timeout, for 3-5 s.

What to expect: 2 % of messages stall up to 1.5 s, more than the failure
timeout: spurious elections and lease expiries, so some duplicates.

Run it (the two lines are the same):

    p2pq sim stalling-links --seeds 1000 --mode both
    python simulations/stalling_links.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim stalling-links --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.stalling_links: it is kept
inside the package so that `p2pq sim stalling-links` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["stalling-links"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
