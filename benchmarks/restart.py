"""A restarted highest node with a big table: how many elections until one leader again (L2)?

    python benchmarks/restart.py --tasks 10000 [--runs 3] [--watch 40]
    python benchmarks/restart.py --tasks 100000 --node-args "--retain-finished 100000"

Three local nodes hold --tasks finished tasks; the leader (node3, the
highest) is killed with kill -9 and restarted from its data dir. For
--watch seconds the script samples who leads, every 100 ms at node1, and
counts the terms it sees after the restart; then it times one submit and
its result. One election for the failover and one for the takeover is the
ideal: 2 terms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pq.client import AsyncClient, make_spec, new_task_id  # noqa: E402
from p2pq.testing.cluster import LocalCluster, wait_for  # noqa: E402

NOOP = make_spec("noop")


async def fill(address: str, cluster_dir, tasks: int) -> None:
    async with AsyncClient(address, cluster_dir=cluster_dir, timeout_s=60) as client:
        for start in range(0, tasks, 500):
            await client.submit_many([(new_task_id(), NOOP) for _ in range(min(500, tasks - start))])
        while True:
            counts = (await client.stats())["counts"]
            if counts["queued"] == 0 and counts["running"] == 0:
                return
            await asyncio.sleep(0.1)


ELECTION_LOG = ("leader_elected", "stepped_down", "leader_accepted", "node_dead", "election", "gather")


def election_log(cluster: LocalCluster) -> str:
    """Every node's log lines about elections and deaths, merged in time order."""
    lines = []
    for node in cluster.nodes:
        if node.log_path.exists():
            lines += [f"{line[:23]} {node.node_id}: {line[24:]}" for line in node.log_path.read_text(errors="replace").splitlines()
                      if any(word in line for word in ELECTION_LOG)]
    return "\n".join(sorted(lines))


def one_run(tasks: int, watch_s: float, node_args: list[str], show_log: bool = False) -> dict:
    with LocalCluster(3, slots=2, extra_args=node_args) as cluster:
        asyncio.run(fill(cluster.nodes[2].address, cluster.cluster_dir, tasks))
        held = cluster.client(0).stats()["tasks"]
        cluster.kill(2)
        wait_for(lambda: cluster.leader(0) and cluster.leader(0)[0] == 1, 30, "node2 to lead")
        cluster.restart(2)
        restarted = time.monotonic()
        terms, back_s = [], None
        while time.monotonic() - restarted < watch_s:
            try:
                view = cluster.view(0)
            except Exception:  # noqa: BLE001 -- between leaders: sample again
                view = None
            if view is not None and (not terms or terms[-1] != view["term"]):
                terms.append(view["term"])
            if back_s is None and view is not None and view["leader"] == "node3":
                back_s = time.monotonic() - restarted
            time.sleep(0.1)
        started = time.monotonic()
        client = cluster.client(0)
        client.result(client.submit("noop"), wait=True, timeout_s=60)
        if show_log:
            print(election_log(cluster), flush=True)
        return {"tasks_held": held, "terms_seen": len(terms), "terms": terms,
                "node3_leads_after_s": None if back_s is None else round(back_s, 2),
                "submit_wait_s": round(time.monotonic() - started, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--watch", type=float, default=40.0)
    parser.add_argument("--node-args", default="", help='more flags for every node, e.g. "--retain-finished 100000"')
    parser.add_argument("--show-log", action="store_true", help="print the nodes' election log lines after each run")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        result = one_run(args.tasks, args.watch, shlex.split(args.node_args), args.show_log)
        print(f"  run {run + 1}: {json.dumps(result)}", flush=True)
        results.append(result)
    print(json.dumps({"tasks": args.tasks, "runs": len(results),
                      "terms_seen_median": statistics.median(r["terms_seen"] for r in results),
                      "terms_seen_max": max(r["terms_seen"] for r in results),
                      "submit_wait_s_median": statistics.median(r["submit_wait_s"] for r in results)}))


if __name__ == "__main__":
    main()
