"""Latency: submit acknowledgment and submit-to-result round trips on a 3-node local cluster.

    python benchmarks/latency.py --rounds 500

One client at a time (no queueing), talking to the leader's node and to a
non-leader (one forwarding hop). Prints p50/p90/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import summary_ms  # noqa: E402
from p2pq.client import AsyncClient, make_spec, new_task_id  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402

NOOP = make_spec("noop")


async def measure(address: str, cluster_dir, rounds: int) -> dict:
    acks, results = [], []
    async with AsyncClient(address, cluster_dir=cluster_dir) as client:
        for _ in range(20):  # warm up connections and worker processes
            await client.wait((await client.submit_spec(NOOP, new_task_id()))["ids"][0])
        for _ in range(rounds):
            t0 = time.perf_counter()
            reply = await client.submit_spec(NOOP, new_task_id())
            t1 = time.perf_counter()
            await client.wait(reply["ids"][0])
            t2 = time.perf_counter()
            acks.append(t1 - t0)
            results.append(t2 - t0)
    return {"submit_ack": summary_ms(acks), "submit_to_result": summary_ms(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--node-args", default="")
    args = parser.parse_args()
    with LocalCluster(3, slots=2, extra_args=args.node_args.split()) as cluster:
        leader, _ = cluster.leader()
        other = next(i for i in cluster.running_indexes() if i != leader)
        out = {"benchmark": "latency", "nodes": 3, "replicas": 1, "rounds": args.rounds, "node_args": args.node_args,
               "via_leader": asyncio.run(measure(cluster.nodes[leader].address, cluster.cluster_dir, args.rounds)),
               "via_other_node": asyncio.run(measure(cluster.nodes[other].address, cluster.cluster_dir, args.rounds))}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
