"""How the cost of a cluster grows with its size: real nodes on loopback, n = 5, 10, 20, 40.

    python benchmarks/scale.py --sizes 5,10,20,40 [--idle-s 10] [--node-args '--election ranked']

For each n: n nodes (1 slot each, a --peer seed, no mDNS) are started at
once, and the script measures

- formation: from the first start to every node seeing every node alive
  and all agreeing on the highest node as leader;
- idle cost: CPU per node (% of one core, from /proc over --idle-s, the
  worker processes included), sends per second per node (TCP data
  segments, from `ss`: a node writes each batch of frames at once), and RSS
  per node (the node process alone);
- failover after a `kill -9` of the leader: until a submit through another
  node is acknowledged by the new leader, and until every live node names
  the same new leader; and the term it ends on (one election per death
  gives the old term + 1).

Nodes are asked through one client each, polling every 50 ms, so the
failover figures carry up to that much of it. The machine is shared and
noisy: compare sizes within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pq.client import Client, P2PQError, make_spec  # noqa: E402
from p2pq.testing.cluster import LocalCluster  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split():
                pids += process_tree(int(child))
    except OSError:
        pass
    return pids


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def segments_sent(pids: set[int]) -> dict[int, int]:
    """TCP data segments each process has sent on its open connections (`ss -tnpi`): a node
    writes each batch of frames at once, so this counts its sends, peers and clients alike."""
    import re
    import subprocess
    out = subprocess.run(["ss", "-tnpiH", "state", "established"], capture_output=True, text=True).stdout
    sent: dict[int, int] = dict.fromkeys(pids, 0)
    owner = None
    for line in out.splitlines():
        found = re.search(r"pid=(\d+)", line)
        if found:
            owner = int(found.group(1))
        segs = re.search(r"data_segs_out:(\d+)", line)
        if segs and owner in sent:
            sent[owner] += int(segs.group(1))
    return sent


def poll(condition, timeout_s: float, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    return None


def agreed_leader(cluster: LocalCluster, indexes: list[int]) -> tuple[str, str] | None:
    """(leader, term) if every node in `indexes` names the same live leader, else None."""
    seen = set()
    for i in indexes:
        try:
            view = cluster.view(i)
        except P2PQError:
            return None
        seen.add((view["leader"], view["term"]))
    if len(seen) != 1:
        return None
    leader, term = seen.pop()
    return (leader, term) if leader else None


def measure(n: int, idle_s: float, node_args: list[str]) -> dict:
    start = time.monotonic()
    with LocalCluster(n, slots=1, extra_args=node_args) as cluster:  # waits until formed (wait_formed)
        formed_s = time.monotonic() - start
        pids = [node.process.pid for node in cluster.nodes]
        time.sleep(1.0)  # let the first followers and slots settle before idling
        trees = [process_tree(pid) for pid in pids]
        before = [sum(cpu_s(p) for p in tree) for tree in trees]
        segs_before = segments_sent(set(pids))
        time.sleep(idle_s)
        after = [sum(cpu_s(p) for p in tree) for tree in trees]
        segs_after = segments_sent(set(pids))
        idle_cpu = [100 * (a - b) / idle_s for a, b in zip(after, before)]
        sends = [(segs_after[p] - segs_before[p]) / idle_s for p in pids]
        rss = [rss_mib(pid) for pid in pids]
        leader, term = cluster.leader()
        survivors = [i for i in cluster.running_indexes() if i != leader]
        asker = survivors[0]
        with Client(cluster.nodes[asker].address, cluster_dir=cluster.cluster_dir, failover=False,
                    timeout_s=0.5) as client:
            killed_at = time.monotonic()
            cluster.kill(leader, signal.SIGKILL)

            def acknowledged():
                try:
                    reply = client.submit_spec(make_spec("noop"))
                except P2PQError:
                    return None
                return reply if reply.get("leader") != cluster.nodes[leader].node_id else None
            ack = poll(acknowledged, 60, 0.0)
            ack_s = time.monotonic() - killed_at
            agreed = poll(lambda: agreed_leader(cluster, survivors), 60)
            agreed_s = time.monotonic() - killed_at
    old_term = int(term.split("@")[0])
    new_term = int(agreed[1].split("@")[0]) if agreed else None
    return {"n": n, "formed_s": round(formed_s, 2),
            "idle_cpu_pct_per_node": round(statistics.median(idle_cpu), 2),
            "idle_cpu_pct_leader": round(idle_cpu[leader], 2),
            "sends_per_s_per_node": round(statistics.median(sends), 1),
            "sends_per_s_leader": round(sends[leader], 1),
            "rss_mib_per_node": round(statistics.median(rss), 1),
            "failover_first_ack_s": round(ack_s, 2) if ack else None,
            "failover_all_agree_s": round(agreed_s, 2) if agreed else None,
            "terms_for_one_death": (new_term - old_term) if new_term is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,10,20,40", help="comma-separated cluster sizes")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--node-args", default="", help="more `p2pq node` flags, e.g. '--election ranked'")
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes takes integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 2:
        parser.error("--sizes: each size must be at least 2 (a failover needs a survivor)")
    rows = []
    print(f"{'n':>4} {'form s':>7} {'idle CPU %/node':>16} {'leader %':>9} {'sends/s/node':>13} "
          f"{'leader':>7} {'RSS MiB':>8} {'first ack s':>12} {'all agree s':>12} {'terms':>6}")
    for n in sizes:
        row = measure(n, args.idle_s, args.node_args.split())
        rows.append(row)
        print(f"{n:>4} {row['formed_s']:>7} {row['idle_cpu_pct_per_node']:>16} {row['idle_cpu_pct_leader']:>9} "
              f"{row['sends_per_s_per_node']:>13} {row['sends_per_s_leader']:>7} {row['rss_mib_per_node']:>8} "
              f"{row['failover_first_ack_s']!s:>12} "
              f"{row['failover_all_agree_s']!s:>12} {row['terms_for_one_death']!s:>6}", flush=True)
    if args.json_path:
        args.json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
