"""isolate-follower-then-crash-leader: Isolate the follower, let the leader go
on without it, crash the leader, heal.

The shape that lost Kafka's acknowledged writes (Jepsen, 2013): the replica
set shrank to the leader alone, the leader acknowledged, died, and the stale
follower came back to lead. Here the leader must pick a new follower before
it acknowledges anything (G1).

What to expect: Kafka's lost writes (Jepsen, 2013): a shrunken replica set
acknowledges, dies, and a stale replica leads. p2pq must choose a new
follower before acknowledging anything, so lost stays 0.

Run it (the two lines are the same):

    p2pq sim isolate-follower-then-crash-leader --seeds 1000 --mode both
    python simulations/isolate_follower_then_crash_leader.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim isolate-follower-then-crash-leader --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.isolate_follower_then_crash_leader: it is kept
inside the package so that `p2pq sim isolate-follower-then-crash-leader` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["isolate-follower-then-crash-leader"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
