"""big-state-restarts: a day's table (9,000 finished tasks, 1 KiB of
arguments each: 9 MB on every node) and a stream with 512 KiB arguments
(one task in 20); the highest node is killed and restarted from its disk
twice.

What to expect: nothing lost, five terms in all (the first leader, then a
failover and a takeover per restart), and catching up by difference: the
restarted node offers and is sent only the records of buckets whose
digests differ, a few hundred records, not the 9,000 (`World.records_sent`;
tests/sim/test_scenarios.py checks it, and again at 100,000 tasks).

Run it (the two lines are the same):

    p2pq sim big-state-restarts --seeds 1000 --mode both
    python simulations/big_state_restarts.py --seeds 1000 --mode both

The schedule itself is p2pq.sim.scenarios.big_state_restarts. See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["big-state-restarts"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
