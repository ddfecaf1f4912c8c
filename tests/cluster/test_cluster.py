"""Real `p2pq node` processes on loopback: forming, submitting, and surviving kill -9."""

from __future__ import annotations

import signal
import time

import pytest

from p2pq.client import P2PQError, make_spec, new_task_id
from p2pq.testing.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    with LocalCluster(3, slots=2) as c:
        yield c


def non_leader(cluster: LocalCluster) -> int:
    leader, _ = cluster.leader()
    return next(i for i in cluster.running_indexes() if i != leader)


def test_three_nodes_form_a_cluster_with_peer_seeds(cluster):
    leader, term = cluster.leader()
    assert cluster.nodes[leader].node_id == "node3"  # the highest priority leads
    # Followers are re-chosen as nodes join: wait until the highest other node holds the copy.
    want = {"node3": "leader", "node2": "follower", "node1": "member"}
    wait_for(lambda: {m["node"]: m["role"] for m in cluster.view(0)["members"]} == want, 10,
             "node2 to become the follower")
    assert term.startswith("1@") or int(term.split("@")[0]) >= 1


def test_three_nodes_form_a_cluster_by_mdns_alone():
    with LocalCluster(3, slots=1, mdns=True, seeds=False) as c:
        leader, _ = c.leader()
        assert c.nodes[leader].node_id == "node3"
        for i in range(3):
            assert {m["node"] for m in c.view(i)["members"] if m["alive"]} == {"node1", "node2", "node3"}


def test_a_submit_to_a_non_leader_is_forwarded_and_runs(cluster):
    client = cluster.client(non_leader(cluster))
    task_id = client.submit("fibonacci", 30, priority=1)
    task = client.result(task_id, wait=True, timeout_s=30)
    assert task["state"] == "succeeded"
    assert task["result"]["value"] == 832040


def test_kill_9_of_the_leader_during_500_submits_loses_nothing(cluster):
    old_leader, old_term = cluster.leader()
    via = non_leader(cluster)
    client = cluster.client(via, timeout_s=20)
    acked: dict[str, float] = {}
    killed_at = None
    for i in range(500):
        if i == 150:
            killed_at = time.monotonic()
            cluster.kill(old_leader, signal.SIGKILL)
        task_id = new_task_id()
        try:
            client.submit_spec(make_spec("noop", priority=1 + i % 9), task_id)
            acked[task_id] = time.monotonic()
        except P2PQError as exc:
            print(f"submit {i} not acknowledged: {exc}")
    first_after = min(t for t in acked.values() if t > killed_at)
    print(f"failover: first submit acknowledged {first_after - killed_at:.3f} s after kill -9 of the leader")
    assert len(acked) == 500  # the client rides over the failover by retrying
    new_leader, new_term = wait_for(cluster.leader, 15, "a new leader")
    assert new_leader != old_leader
    assert int(new_term.split("@")[0]) > int(old_term.split("@")[0])

    def all_finished():
        listing = client.list(limit=1000)
        states = {t["id"]: t["state"] for t in listing["tasks"]}
        return all(states.get(t) == "succeeded" for t in acked)
    wait_for(all_finished, 60, "every acknowledged task to finish")


def test_kill_9_of_a_node_running_a_task_reruns_it_elsewhere(cluster):
    leader, _ = cluster.leader()
    client = cluster.client(leader)
    task_id = client.submit("sleep", 4)

    def running_on():
        task = client.status(task_id)
        return task["attempts"][-1]["node"] if task["state"] == "running" else None
    runner = wait_for(running_on, 10, "the task to start")
    victim = next(n.index for n in cluster.nodes if n.node_id == runner)
    if victim == leader:
        client = cluster.client(non_leader(cluster))
    cluster.kill(victim, signal.SIGKILL)
    task = client.result(task_id, wait=True, timeout_s=30)
    assert task["state"] == "succeeded"
    nodes = [(a["node"], a["outcome"]) for a in task["attempts"]]
    assert nodes[0] == (runner, "lost")
    assert nodes[-1][1] == "succeeded" and nodes[-1][0] != runner


def test_a_coordinator_with_no_slots_leads_and_runs_nothing():
    """--slots 0 (issue 13): the highest node leads and replicates; every task runs elsewhere."""
    with LocalCluster(2, slots=1, node_args={1: ["--slots", "0"]}) as cluster:
        index, _ = cluster.leader()
        assert cluster.nodes[index].node_id == "node2"
        client = cluster.client(1)
        ids = [client.submit("echo", i) for i in range(6)]
        tasks = [client.result(i, wait=True, timeout_s=30) for i in ids]
        assert {t["state"] for t in tasks} == {"succeeded"}
        assert {a["node"] for t in tasks for a in t["attempts"]} == {"node1"}
        slots = {m["node"]: m["slots"] for m in cluster.view(0)["members"]}
        assert slots == {"node1": 1, "node2": 0}


def test_a_second_node_with_a_taken_id_stops_with_one_line_and_the_first_serves():
    """Issue 13: two nodes with one id each elected themselves and stayed apart, silently."""
    cluster = LocalCluster(2, slots=1, node_args={1: ["--node-id", "node1"]})
    try:
        cluster.start(wait=False)
        cluster.kill(1)  # let node1 come up first: the newer of the two is the one that stops
        wait_for(lambda: cluster.view(0)["role"] == "leader", 20, "node1 leading alone")
        cluster.restart(1)
        twin = cluster.nodes[1]
        wait_for(lambda: twin.process.poll() is not None, 20, "the twin to stop")
        log = twin.log_path.read_text()
        assert twin.process.returncode != 0 and "Traceback" not in log
        assert "node id 'node1' is already taken by the node at 127.0.0.1:" in log
        assert f"the node at 127.0.0.1:{twin.port} stops" in log
        assert cluster.nodes[0].running and cluster.view(0)["role"] == "leader"
        assert cluster.client(0).submit("noop")
    finally:
        cluster.stop()


def test_a_node_without_an_id_makes_a_unique_one_and_keeps_it(tmp_path):
    from p2pq.net.node import NodeRuntime, NodeSettings, default_node_id
    from p2pq.net.storage import open_store
    assert default_node_id(7470) != default_node_id(7470)
    (tmp_path / "data").mkdir()
    ids = []
    for _ in range(2):
        runtime = NodeRuntime(NodeSettings(cluster_dir=tmp_path / "cluster", data_dir=tmp_path / "data", port=7470))
        runtime.store = open_store(runtime.data_dir, "written")
        runtime._settle_identity(runtime.store.load())
        runtime.store.close()
        ids.append(runtime.node_id)
    assert ids[0] == ids[1] and ids[0].rsplit("-", 2)[1] == "7470"


def test_big_arguments_replicate_in_parts_through_a_failover():
    """Issue 13: two 9 MB arguments made every snapshot too big for a frame, for good.

    Now an argument over the limit is refused at submit, and 24 tasks of
    900 KB each (a table of 21 MB, more than a frame) survive a kill -9 of
    the leader: the new leader gathers them in parts and runs them all.
    """
    with LocalCluster(3, slots=1) as cluster:
        client = cluster.client(0, timeout_s=30)
        with pytest.raises(P2PQError, match="over the limit"):
            client.submit("echo", "x" * 9_000_000)
        ids = [client.submit("echo", f"{i:02d}" + "x" * 900_000, priority=9) for i in range(24)]
        leader, term = cluster.leader()
        cluster.kill(leader)
        survivor = next(i for i in cluster.running_indexes())
        after = cluster.client(survivor, timeout_s=30)
        wait_for(lambda: cluster.leader(survivor) and cluster.leader(survivor)[1] != term, 30, "a new leader")
        tasks = [after.result(i, wait=True, timeout_s=60) for i in ids]
        assert {t["state"] for t in tasks} == {"succeeded"}
        assert after.submit("noop")
        assert "exceeds the limit" not in cluster.logs()


def test_a_node_dead_for_long_is_forgotten_and_met_again_when_it_returns():
    """Issue 13: heartbeats were queued for departed nodes forever (forget_peer was never called)."""
    with LocalCluster(3, slots=1, extra_args=["--forget-after-s", "2"]) as cluster:
        index, _ = cluster.leader()
        cluster.kill(0)

        def members() -> dict[str, bool]:
            return {m["node"]: m["alive"] for m in cluster.view(index)["members"]}

        wait_for(lambda: "node1" not in members(), 30, "the leader to forget node1")
        assert "node_forgotten {'node': 'node1'" in cluster.nodes[index].log_path.read_text()
        cluster.restart(0)
        wait_for(lambda: members().get("node1") is True, 60, "node1 to be met again")
        assert cluster.client(0).result(cluster.client(0).submit("noop"), wait=True, timeout_s=30)["state"] == "succeeded"
