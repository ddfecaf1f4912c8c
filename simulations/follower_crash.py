"""follower-crash: kill -9 the follower holding the copy; the leader picks
another (back at the heal).

What to expect: No failover: the leader declares the follower dead after the
failure timeout and picks the next-ranked live node, which receives a
snapshot. Submits wait (or are refused `unreplicated`) during that second,
never acknowledged with one copy.

Run it (the two lines are the same):

    p2pq sim follower-crash --seeds 1000 --mode both
    python simulations/follower_crash.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim follower-crash --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.follower_crash: it is kept
inside the package so that `p2pq sim follower-crash` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["follower-crash"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
