"""`p2pq demo`: three real nodes on this machine, a batch of tasks, a leader killed mid-way.

It shows the whole idea in under a minute: the nodes form a cluster, the
leader is killed with SIGKILL while tasks run, another node takes over
within about a second, and every acknowledged task still finishes; tasks
that the dead node held (running, or waiting there for a slot) show a
second attempt in their history.
"""

from __future__ import annotations

import random
import signal
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from p2pq.client import make_spec, new_task_id
from p2pq.testing.cluster import LocalCluster, wait_for

TASKS = [("fibonacci", (27,)), ("is_prime", (1_000_003,)), ("reverse_string", ("p2pq",)),
         ("to_uppercase", ("lab",)), ("sleep", (0.4,)), ("sleep", (0.8,)), ("echo", ("hello",))]


def run_demo(nodes: int = 3, tasks: int = 60, console: Console | None = None) -> bool:
    """Run the demo; True if every acknowledged task finished."""
    console = console or Console()
    rng = random.Random()
    console.rule("[bold]p2pq demo")
    console.print(f"Starting {nodes} nodes on 127.0.0.1 (each its own process, TLS between them)...")
    with LocalCluster(nodes, slots=2) as cluster:
        leader, term = cluster.leader()
        _show_cluster(console, cluster)
        client = cluster.client(0)
        ids = _submit(console, client, rng, tasks // 2)
        _wait_some(console, cluster, ids, len(ids) // 3)
        killed = cluster.nodes[leader]
        console.print(f"\n[bold red]kill -9[/] the leader [bold]{killed.node_id}[/] (term {term}) "
                      f"while tasks are queued and running...")
        t0 = time.monotonic()
        cluster.kill(leader, signal.SIGKILL)
        survivor = next(i for i in cluster.running_indexes())
        ids += _submit(console, cluster.client(survivor), rng, tasks - len(ids), quiet=True)
        failover_s = time.monotonic() - t0
        new_leader, new_term = wait_for(lambda: cluster.leader(), 10, "a new leader")
        console.print(f"[green]failover:[/] {cluster.nodes[new_leader].node_id} leads term {new_term}; "
                      f"the next submit was acknowledged {failover_s:.2f} s after the kill")
        return _finish(console, cluster, survivor, ids, killed.node_id)


def _show_cluster(console: Console, cluster: LocalCluster) -> None:
    view = cluster.view(0)
    table = Table("node", "role", "priority", "address", title=f"cluster formed: term {view['term']}")
    for m in sorted(view["members"], key=lambda m: -m["priority"]):
        table.add_row(m["node"], m["role"], str(m["priority"]), ":".join(map(str, m["address"] or ())))
    console.print(table)


def _submit(console: Console, client, rng: random.Random, count: int, quiet: bool = False) -> list[str]:
    batch = []
    for _ in range(count):
        name, args = rng.choice(TASKS)
        batch.append((new_task_id(), make_spec(name, args, priority=rng.choice((1, 3, 5, 8)))))
    client._call(client._async.submit_many(batch))
    if not quiet:
        console.print(f"submitted {count} tasks (built-ins, priorities 1-8) through "
                      f"{client._async.address[0]}:{client._async.address[1]}")
    return [task_id for task_id, _ in batch]


def _wait_some(console: Console, cluster: LocalCluster, ids: list[str], count: int) -> None:
    client = cluster.client(0)
    wait_for(lambda: sum(1 for t in ids[:count * 2] if client.status(t)["state"] == "succeeded") >= count,
             30, f"{count} finished tasks")


def _finish(console: Console, cluster: LocalCluster, via: int, ids: list[str], dead: str) -> bool:
    client = cluster.client(via)
    columns = (TextColumn("tasks finished"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("", total=len(ids))
        done: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while len(done) < len(ids) and time.monotonic() < deadline:
            for task_id in ids:
                if task_id not in done:
                    task = client.status(task_id)
                    if task["state"] in ("succeeded", "failed", "cancelled"):
                        done[task_id] = task
            progress.update(bar, completed=len(done))
            time.sleep(0.1)
    rerun = [t for t in done.values() if len(t["attempts"]) > 1]
    ok = len(done) == len(ids) and all(t["state"] == "succeeded" for t in done.values())
    style = "bold green" if ok else "bold red"
    console.print(f"[{style}]{len(done)}/{len(ids)} tasks finished[/], none lost; "
                  f"{len(rerun)} were held by {dead} (running or waiting for a slot) and ran again elsewhere:")
    for t in rerun[:5]:
        history = ", ".join(f"{a['node']}: {a['outcome']}" for a in t["attempts"])
        console.print(f"  {t['id']} {t['target']}  attempts: {history}")
    console.print("Try it yourself: [bold]p2pq node[/] on every machine, then [bold]p2pq submit[/].")
    return ok
