"""leader-crash: kill -9 the leader mid-stream; it restarts from its disk 2-4 s
later.

What to expect: One failover per run, about one failure timeout plus an
election (L1, target under 1.5 s). No duplicates expected: the dead leader's
running attempt is requeued as `lost` and runs once more only if it had not
finished.

Run it (the two lines are the same):

    p2pq sim leader-crash --seeds 1000 --mode both
    python simulations/leader_crash.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim leader-crash --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.leader_crash: it is kept
inside the package so that `p2pq sim leader-crash` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["leader-crash"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
