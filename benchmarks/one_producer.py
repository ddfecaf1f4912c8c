"""What a user's own script gets: one producer, the public API, every result collected and checked.

    python benchmarks/one_producer.py --tasks 2000 --runs 3

N no-op Python callables (`bench_tasks:noop`, returning its argument) go
through a 2-node local cluster with 1 slot each, replication on, default
durability, from one thread:

- loop: the plain loop a newcomer writes, `submit` then `result(wait=True)`,
  one task at a time;
- round trip: the same loop's per-task time (submit one task, wait for its
  result), p50 and p99;
- map: `p2pq.Executor.map` over the tasks, results read in order;
- as_completed: a future per task (`Executor.submit`), results taken with
  `p2pq.as_completed`;
- future_round_trip: one future at a time (submit, `result()`), p50 and p99.

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

import bench_tasks  # noqa: E402

import p2pq  # noqa: E402
from p2pq.client import Client  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402


def cpu_seconds() -> float:
    """CPU time the whole machine has spent (every core, every process), in seconds.

    Of /proc/stat's first line: user, nice, system, irq and softirq; not idle,
    iowait, or steal (time the hypervisor gave to another machine), and not
    guest time, which user already counts.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:7]) if i not in (3, 4))
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


def mapped(executor: p2pq.Executor, tasks: int) -> tuple[float, list[float]]:
    """Executor.map over the tasks, every result read in order and checked."""
    start = time.perf_counter()
    for i, value in enumerate(executor.map(bench_tasks.noop, range(tasks))):
        if value != i:
            raise AssertionError(f"map gave {value!r} for {i}")
    return time.perf_counter() - start, []


def completed(executor: p2pq.Executor, tasks: int) -> tuple[float, list[float]]:
    """A future per task (Executor.submit), results taken with as_completed and checked."""
    start = time.perf_counter()
    futures = {executor.submit(bench_tasks.noop, i): i for i in range(tasks)}
    for future in p2pq.as_completed(futures):
        if future.result() != futures[future]:
            raise AssertionError(f"task {future.id}: {future.result()!r}")
    return time.perf_counter() - start, []


def one_at_a_time(executor: p2pq.Executor, tasks: int) -> tuple[float, list[float]]:
    """The round trip through the futures: submit one task, wait for its result, then the next."""
    trips = []
    start = time.perf_counter()
    for i in range(tasks):
        t0 = time.perf_counter()
        if executor.submit(bench_tasks.noop, i).result() != i:
            raise AssertionError(f"task {i}")
        trips.append(time.perf_counter() - t0)
    return time.perf_counter() - start, trips


MODES = {"loop": loop, "map": mapped, "as_completed": completed, "future_round_trip": one_at_a_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    results = []
    with LocalCluster(2, slots=1, extra_args=["--pythonpath", str(HERE)]) as cluster:
        leader, _ = cluster.leader()
        with Client(cluster.nodes[leader].address, cluster_dir=cluster.cluster_dir, timeout_s=60) as client:
            executor = p2pq.Executor(client=client)
            loop(client, 50)  # warm the workers and the connection
            mapped(executor, 200)
            for mode in modes:
                rates, cpus, trips = [], [], []
                tasks = args.tasks if mode not in ("loop", "future_round_trip") else min(args.tasks, 2000)
                for run in range(args.runs):
                    cpu0 = cpu_seconds()
                    wall, run_trips = MODES[mode](client if mode == "loop" else executor, tasks)
                    cpu = cpu_seconds() - cpu0
                    rates.append(tasks / wall)
                    cpus.append(cpu / tasks)
                    trips += run_trips
                    trip = f", round trip p50 {statistics.median(run_trips) * 1e3:.2f} ms" if run_trips else ""
                    print(f"  {mode} run {run + 1}: {rates[-1]:.0f} tasks/s, {cpus[-1] * 1e3:.2f} ms CPU per "
                          f"task{trip}", flush=True)
                result = {"mode": mode, "tasks": tasks, "runs": args.runs,
                          "tasks_per_s_median": round(statistics.median(rates), 1),
                          "cpu_ms_per_task_median": round(statistics.median(cpus) * 1e3, 3)}
                if trips:
                    result["round_trip"] = summary_ms(trips)
                results.append(result)
    print(json.dumps(results, indent=2))
    if args.json_path:
        args.json_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
