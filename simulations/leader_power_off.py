"""leader-power-off: the leader's machine loses power mid-stream and is back
2-4 s later.

What to expect: nothing lost, and a failover a failure timeout long (about
1.2 s with the defaults): nothing tells the others but the leader's silence.
Compare `leader-crash`, where the killed process's machine refuses the
redials that follow and the others move on after two heartbeats (about
0.6 s).

Run it (the two lines are the same):

    p2pq sim leader-power-off --seeds 1000 --mode both
    python simulations/leader_power_off.py --seeds 1000 --mode both

The schedule itself is p2pq.sim.scenarios.leader_power_off. See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["leader-power-off"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
