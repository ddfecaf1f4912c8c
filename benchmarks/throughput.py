"""Throughput: N no-op tasks through a 3-node local cluster with replication on.

    python benchmarks/throughput.py --tasks 20000 --batch 200 --clients 4 [--runs 3]

Submitters send batches of tasks to the non-leader nodes (which forward to
the leader); the clock stops when the leader reports every task succeeded.
Prints tasks/s per run and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pq.client import AsyncClient, make_spec, new_task_id  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402

NOOP = make_spec("noop")


async def submitter(address: str, cluster_dir, tasks: int, batch: int) -> None:
    async with AsyncClient(address, cluster_dir=cluster_dir, timeout_s=60) as client:
        for start in range(0, tasks, batch):
            n = min(batch, tasks - start)
            await client.submit_many([(new_task_id(), NOOP) for _ in range(n)])


async def wait_done(address: str, cluster_dir) -> None:
    """Until nothing is queued or running: every task was acknowledged before, so all have finished.

    (Counting succeeded tasks would not do: finished tasks past the
    retention, 10,000 by default, are pruned from the table.)
    """
    async with AsyncClient(address, cluster_dir=cluster_dir, timeout_s=60) as client:
        while True:
            counts = (await client.stats())["counts"]
            if counts["queued"] == 0 and counts["running"] == 0:
                assert counts["failed"] == 0, counts
                return
            await asyncio.sleep(0.02)


async def one_run(cluster: LocalCluster, tasks: int, batch: int, clients: int) -> float:
    leader, _ = cluster.leader()
    others = [n.address for n in cluster.nodes if n.index != leader]
    start = time.perf_counter()
    per = tasks // clients
    await asyncio.gather(*(submitter(others[i % len(others)], cluster.cluster_dir, per, batch)
                           for i in range(clients)))
    submitted = time.perf_counter()
    await wait_done(cluster.nodes[leader].address, cluster.cluster_dir)
    elapsed = time.perf_counter() - start
    print(f"  {per * clients} tasks: submitted in {submitted - start:.2f} s, all done in {elapsed:.2f} s "
          f"-> {per * clients / elapsed:,.0f} tasks/s", flush=True)
    return per * clients / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--node-args", default="", help="extra `p2pq node` flags, e.g. '--durability fsync'")
    args = parser.parse_args()
    with LocalCluster(3, slots=args.slots, extra_args=args.node_args.split()) as cluster:
        rates = [asyncio.run(one_run(cluster, args.tasks, args.batch, args.clients)) for _ in range(args.runs)]
    print(json.dumps({"benchmark": "throughput", "nodes": 3, "replicas": 1, "tasks": args.tasks,
                      "batch": args.batch, "clients": args.clients, "node_args": args.node_args,
                      "tasks_per_s": [round(r) for r in rates], "median_tasks_per_s": round(statistics.median(rates))}))


if __name__ == "__main__":
    main()
