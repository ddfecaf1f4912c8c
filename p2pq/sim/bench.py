"""How fast does the simulator run? Simulated seconds per wall second, and a 1,000-seed estimate.

    python -m p2pq.sim.bench                              # 5-node chaos, 60 s of faults, 20 seeds
    python -m p2pq.sim.bench --scenario leader-crash --duration 10 --seeds 50 --jobs 2

Reports the median over runs (this machine is shared and noisy: the median
is the honest number), the share of wall time spent inside p2pq/core, and
the wall time a `--seeds 1000` sweep would take with the given --jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from p2pq.core.node import NodeCore

from .scenarios import get
from .sweep import sweep


def measure(scenario: str, seeds: int, duration_s: float | None, nodes: int) -> dict:
    """Run seeds one after another in this process; the core's share comes from a second pass."""
    found = get(scenario)
    name = found.source or found.name
    s = sweep(name, range(seeds), nodes=nodes, duration_s=duration_s, jobs=1)
    speeds = [r.sim_time_s / r.wall_s for r in s.results]
    return {"scenario": found.name, "nodes": nodes, "seeds": seeds,
            "sim_s_per_run_median": round(statistics.median(r.sim_time_s for r in s.results), 1),
            "wall_s_per_run_median": round(statistics.median(r.wall_s for r in s.results), 3),
            "speed_median": round(statistics.median(speeds), 1),
            "speed_min": round(min(speeds), 1), "speed_max": round(max(speeds), 1),
            "core_share": core_share(name, min(seeds, 5), duration_s, nodes)}


def core_share(name: str, seeds: int, duration_s: float | None, nodes: int) -> float:
    """The fraction of wall time spent inside NodeCore.handle_batch (the part the sim cannot speed up)."""
    inside = [0.0]
    original = NodeCore.handle_batch

    def timed(self, events, now):
        start = time.perf_counter()
        try:
            return original(self, events, now)
        finally:
            inside[0] += time.perf_counter() - start
    NodeCore.handle_batch = timed
    try:
        s = sweep(name, range(seeds), nodes=nodes, duration_s=duration_s, jobs=1)
    finally:
        NodeCore.handle_batch = original
    return round(inside[0] / s.wall_s, 2)


def throughput(scenario: str, seeds: int, duration_s: float | None, nodes: int, jobs: int) -> dict:
    """A real sweep on `jobs` processes: seeds per wall second, projected to 1,000 seeds."""
    s = sweep(scenario, range(seeds), nodes=nodes, duration_s=duration_s, jobs=jobs)
    sim = sum(r.sim_time_s for r in s.results)
    return {"jobs": s.jobs, "wall_s": round(s.wall_s, 2), "aggregate_speed": round(sim / s.wall_s, 1),
            "projected_1000_seeds_s": round(s.wall_s / seeds * 1000, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m p2pq.sim.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="chaos")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    result = measure(args.scenario, args.seeds, args.duration, args.nodes)
    result.update(throughput(args.scenario, args.seeds, args.duration, args.nodes, args.jobs))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
