"""What a user's own script gets: one producer, the public API, every result collected and checked.

    python benchmarks/one_producer.py --tasks 2000 --runs 3

N no-op Python callables (`bench_tasks:noop`, returning its argument) go
through a 2-node local cluster with 1 slot each, replication on, default
durability, from one thread:

- loop: the plain loop a newcomer writes, `submit` then `result(wait=True)`,
  one task at a time;
- round trip: the same loop's per-task time (submit one task, wait for its
  result), p50 and p99.

Reports tasks/s (median of the runs) and the CPU the whole machine spent
per task (from /proc/stat, so the nodes, their workers and the client all
count: run it with nothing else busy). The machine is shared and noisy:
quote medians, and compare modes from one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import summary_ms  # noqa: E402

from p2pq.client import Client  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402


def cpu_seconds() -> float:
    """CPU time the whole machine has spent (every core, every process), in seconds."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def loop(client: Client, tasks: int) -> tuple[float, list[float]]:
    """The plain loop; returns its wall time and each task's round trip."""
    trips = []
    start = time.perf_counter()
    for i in range(tasks):
        t0 = time.perf_counter()
        task_id = client.submit("bench_tasks:noop", i)
        task = client.result(task_id, wait=True)
        trips.append(time.perf_counter() - t0)
        if task["state"] != "succeeded" or task["result"]["value"] != i:
            raise AssertionError(f"task {task_id}: {task['state']} {task.get('result')}")
    return time.perf_counter() - start, trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    args = parser.parse_args()
    rates, cpus, trips = [], [], []
    with LocalCluster(2, slots=1, extra_args=["--pythonpath", str(HERE)]) as cluster:
        leader, _ = cluster.leader()
        with Client(cluster.nodes[leader].address, cluster_dir=cluster.cluster_dir, timeout_s=60) as client:
            loop(client, 50)  # warm the workers and the connection
            for run in range(args.runs):
                cpu0 = cpu_seconds()
                wall, run_trips = loop(client, args.tasks)
                cpu = cpu_seconds() - cpu0
                rates.append(args.tasks / wall)
                cpus.append(cpu / args.tasks)
                trips += run_trips
                print(f"  run {run + 1}: {rates[-1]:.0f} tasks/s, {cpus[-1] * 1e3:.2f} ms CPU per task, "
                      f"round trip p50 {statistics.median(run_trips) * 1e3:.2f} ms")
    result = {"mode": "loop", "tasks": args.tasks, "runs": args.runs,
              "tasks_per_s_median": round(statistics.median(rates), 1),
              "cpu_ms_per_task_median": round(statistics.median(cpus) * 1e3, 3),
              "round_trip": summary_ms(trips)}
    print(json.dumps(result, indent=2))
    if args.json_path:
        args.json_path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
