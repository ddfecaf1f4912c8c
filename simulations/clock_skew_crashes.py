"""clock-skew-crashes: clocks drift 25 % fast or slow and step +-10 s while
nodes crash and restart on their stepped clocks.

What to expect: nothing lost, and in quorum mode never two terms
acknowledging at once (2ack_s 0.0). A step of a running node's wall clock
changes nothing (its protocol clock is monotonic, p2pq/net/clock.py); a node
restarted after a step stamps its records 10 s off the others', which moves
no lease (leases are measured on one node's clock) and no retry (a failure
stamped far ahead is retried at once). The leases allow clock rates that
differ by less than 2x; these differ by at most 1.56x.

Run it (the two lines are the same):

    p2pq sim clock-skew-crashes --seeds 1000 --mode both
    python simulations/clock_skew_crashes.py --seeds 1000 --mode both

The schedule itself is p2pq.sim.scenarios.clock_skew_crashes. See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["clock-skew-crashes"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
