"""Journals on real processes: kill -9 of the whole cluster, a corrupted journal, a stable identity."""

from __future__ import annotations

import collections
import signal

import pytest

from p2pq.client import make_spec, new_task_id
from p2pq.net.storage import open_store
from p2pq.testing.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def cluster_with(*extra_args: str):
    with LocalCluster(3, slots=2, extra_args=list(extra_args)) as cluster:
        yield cluster


@pytest.fixture
def cluster():
    yield from cluster_with()


def submit(client, spec, n: int) -> list[str]:
    """Submit n copies of spec; the ids of the acknowledged ones."""
    return [client.submit_spec(spec, new_task_id())["ids"][0] for _ in range(n)]


def tasks(client) -> dict[str, dict]:
    return {t["id"]: t for t in client.list(limit=100_000)["tasks"]}


def all_succeeded(client, ids) -> bool:
    held = tasks(client)
    return all(held.get(t, {}).get("state") == "succeeded" for t in ids)


def leader_client(cluster: LocalCluster):
    index, _ = wait_for(cluster.leader, 30, "one leader")
    return cluster.client(index, timeout_s=30)


@pytest.mark.parametrize("durability", ["written", "fsync"])
def test_kill_9_of_every_node_loses_no_acknowledged_task(durability):
    for cluster in cluster_with("--durability", durability):
        client = leader_client(cluster)
        finished = submit(client, make_spec("noop"), 200)
        wait_for(lambda: all_succeeded(client, finished), 30, "the no-op tasks to finish")
        slow = submit(client, make_spec("sleep", [2]), 24)  # 6 slots: some run, the rest queue
        wait_for(lambda: collections.Counter(t["state"] for t in tasks(client).values())["running"] >= 4,
                 15, "sleep tasks to be running")
        before = tasks(client)
        states = collections.Counter(before[t]["state"] for t in slow)
        assert states["running"] and states["queued"], states
        for i in range(3):
            cluster.kill(i, signal.SIGKILL)  # the room goes dark: nobody leaves cleanly
        for i in range(3):
            cluster.restart(i)
        cluster.wait_formed(60)
        client = leader_client(cluster)
        after = tasks(client)
        assert set(finished + slow) <= after.keys(), "an acknowledged task was lost"
        for task_id in finished:  # finished ones stay finished, and are not run again
            assert after[task_id]["state"] == "succeeded"
            assert after[task_id]["attempts"] == before[task_id]["attempts"]
        wait_for(lambda: all_succeeded(client, slow), 60, "the interrupted and queued tasks to finish")


def test_a_corrupted_journal_is_reported_and_recovered_from_peers(cluster):
    client = leader_client(cluster)
    early = submit(client, make_spec("noop"), 100)
    wait_for(lambda: all_succeeded(client, early), 30, "the first tasks to finish")
    victim = cluster.nodes[2]  # node3: the leader, which the others must now feed
    cluster.kill(2, signal.SIGTERM)  # a clean stop folds the WAL into journal.db...
    journal = victim.data_dir / "journal.db"
    assert not (victim.data_dir / "journal.db-wal").exists()
    with open(journal, "r+b") as f:
        f.write(b"\0" * 100)  # ...whose first page the disk then loses: "file is not a database"
    client = leader_client(cluster)
    late = submit(client, make_spec("noop"), 50)  # tasks the victim never saw
    wait_for(lambda: all_succeeded(client, late), 30, "the later tasks to finish")

    cluster.restart(2)
    wait_for(lambda: (cluster.leader() or (None,))[0] == 2, 30, "node3 to lead again")
    lines = [line for line in victim.log_path.read_text().splitlines() if "is corrupted" in line]
    assert len(lines) == 1, lines
    assert f"journal {journal} is corrupted (file is not a database); moved it to journal.db.corrupt-" in lines[0]
    assert "recover the cluster's tasks from its peers" in lines[0]
    assert "Traceback" not in victim.log_path.read_text()

    client = cluster.client(2, timeout_s=30)
    wait_for(lambda: all_succeeded(client, early + late), 30, "node3 to hold every task")
    for i in (0, 1):  # node3's own table is all that is left to answer from
        cluster.kill(i, signal.SIGKILL)
    assert all_succeeded(client, early + late)
    cluster.kill(2, signal.SIGKILL)
    store = open_store(victim.data_dir, "written")  # and its new journal has them too
    assert {r.task_id for r in store.load().records} >= set(early + late)
    store.close()


def test_a_node_restarted_without_id_and_priority_flags_keeps_them(cluster):
    node = cluster.nodes[1]
    cluster.kill(1, signal.SIGKILL)
    for flag in ("--node-id", "--priority"):
        at = node.args.index(flag)
        del node.args[at:at + 2]
    cluster.restart(1)
    cluster.wait_formed(30)

    def node2_back():  # the leader saw it die; it is alive and following again soon after
        members = {m["node"]: m for m in cluster.view(0)["members"]}
        return members["node2"]["alive"] and members["node2"]["role"] == "follower" and members
    members = wait_for(node2_back, 30, "node1 to see node2 alive and following again")
    assert members["node2"]["priority"] == 2  # still ranked second
