"""crash-restart: kill -9 random nodes one after another, each restarted from
its disk 1-3 s later.

What to expect: Random nodes crash and come back from their disks. Failovers
happen only when the leader is hit; a restarted higher node must catch up
before it takes over (L2).

Run it (the two lines are the same):

    p2pq sim crash-restart --seeds 1000 --mode both
    python simulations/crash_restart.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim crash-restart --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.crash_restart: it is kept
inside the package so that `p2pq sim crash-restart` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["crash-restart"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
