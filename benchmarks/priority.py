"""Priority with prefetch: where do urgent tasks finish when they arrive behind a queue?

    python benchmarks/priority.py [--runs 3] [--node-args "--prefetch 0"]

Two local nodes: the leader runs nothing (--slots 0), the other has one
slot. One submit of 200 short tasks of priority 5, then at once 20 of
priority 1. Each urgent task's position is its place among the tasks that
finished after the urgent ones were submitted. Ideally (nothing running is
stopped) the task already running finishes first and then the 20 urgent
ones: average position 11.5. Prints the average per run and the median
against that ideal; `--node-args "--prefetch 0"` is the same without
prefetch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pq.client import AsyncClient, make_spec, new_task_id  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402



async def one_run(cluster: LocalCluster, background: int, urgent: int, seconds: float) -> float:
    async with AsyncClient(cluster.nodes[1].address, cluster_dir=cluster.cluster_dir, timeout_s=60) as c:
        slow = make_spec("sleep", [seconds], priority=5)
        fast = make_spec("sleep", [seconds], priority=1)
        await c.submit_many([(new_task_id(), slow) for _ in range(background)])
        urgent_ids = [new_task_id() for _ in range(urgent)]
        await c.submit_many([(i, fast) for i in urgent_ids])
        for task_id in urgent_ids:
            await c.wait(task_id, timeout_s=120)
        listing = await c.list(limit=background + urgent + 50)
    ends = sorted((t["attempts"][-1]["ended_at"], t["id"]) for t in listing["tasks"]
                  if t["attempts"] and t["attempts"][-1]["ended_at"] is not None)
    submitted_at = min(t["submitted_at"] for t in listing["tasks"] if t["id"] in set(urgent_ids))
    after = [task_id for ended_at, task_id in ends if ended_at >= submitted_at]
    positions = [after.index(i) + 1 for i in urgent_ids]
    return statistics.fmean(positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--background", type=int, default=200)
    parser.add_argument("--urgent", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.005, help="each task sleeps this long")
    parser.add_argument("--node-args", default="", help="more flags for both nodes")
    args = parser.parse_args()
    ideal = 1 + (args.urgent + 1) / 2  # the task already running, then the urgent ones
    averages = []
    for run in range(args.runs):
        with LocalCluster(2, slots=1, extra_args=shlex.split(args.node_args),
                          node_args={1: ["--slots", "0"]}) as cluster:
            average = asyncio.run(one_run(cluster, args.background, args.urgent, args.seconds))
        print(f"  run {run + 1}: urgent tasks finished at average position {average:.1f} (ideal {ideal})")
        averages.append(average)
    median = statistics.median(averages)
    print(json.dumps({"node_args": args.node_args, "runs": [round(a, 2) for a in averages],
                      "median_position": round(median, 2), "ideal": ideal,
                      "over_ideal": round(median / ideal - 1, 3)}))


if __name__ == "__main__":
    main()
