"""follower-then-leader-crash: The follower dies, a new follower is chosen and
caught up, then the leader dies.

What to expect: The copy moves to a new follower, which must be caught up
(snapshot acknowledged) before the leader dies; then the new leader must
hold every acknowledged task (G1).

Run it (the two lines are the same):

    p2pq sim follower-then-leader-crash --seeds 1000 --mode both
    python simulations/follower_then_leader_crash.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim follower-then-leader-crash --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.follower_then_leader_crash: it is kept
inside the package so that `p2pq sim follower-then-leader-crash` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["follower-then-leader-crash"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
