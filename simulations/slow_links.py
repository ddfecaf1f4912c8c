"""slow-links: Every link turns slow and long-tailed (lognormal, median 20 ms)
for 3-5 s.

What to expect: Every link lognormal, median 20 ms with a long tail: false
suspicions are possible, latency rises, nothing may be lost.

Run it (the two lines are the same):

    p2pq sim slow-links --seeds 1000 --mode both
    python simulations/slow_links.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim slow-links --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.slow_links: it is kept
inside the package so that `p2pq sim slow-links` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["slow-links"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
