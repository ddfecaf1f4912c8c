"""chaos: Random faults from every shape above, alternating with calm periods;
then heal, wait, drain.

What to expect: A random schedule over every fault above, alternating with
calm periods, then heal, wait, drain. The default duration is 30 s;
--duration 60 gives the 60-second scenario quoted in the README.

Run it (the two lines are the same):

    p2pq sim chaos --seeds 1000 --mode both
    python simulations/chaos.py --seeds 1000 --mode both

Replay one seed and print its elections and faults:

    p2pq sim chaos --seed 17 --trace

The schedule itself is p2pq.sim.scenarios.chaos_schedule: it is kept
inside the package so that `p2pq sim chaos` works from an installed wheel.
See docs/simulation.md.
"""

from p2pq.sim.scenarios import SCENARIOS

SCENARIO = SCENARIOS["chaos"]

if __name__ == "__main__":
    from p2pq.sim.command import run_file_main
    run_file_main(SCENARIO.name)
