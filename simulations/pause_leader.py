"""pause-leader: SIGSTOP the leader for 2-4 s: the others elect a new one, then
the stale leader wakes up.

It wakes holding its old term and everything that queued up meanwhile: its
heartbeats and appends must be fenced (G3), and what it held merged.

What to expect: A stale leader: SIGSTOP, the others elect, SIGCONT. It wakes
up with its old term and everything that queued up. Fencing must depose it;
its tasks merge. In quorum mode this is the shape where a woken leader can
still issue an acknowledgment under its old term after the new term
acknowledged (the checker reports it: see docs/simulation.md).

Run it (the two lines are the same):

    p2pq sim pause-leader --seeds 1000 --mode both
    python simulations/pause_leader.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim pause-leader --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.pause_leader: it is kept
inside the package so that `p2pq sim pause-leader` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["pause-leader"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
