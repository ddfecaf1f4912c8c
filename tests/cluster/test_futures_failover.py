"""Futures through a leader's kill -9: every future resolves, once, to what the cluster says."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import p2pq
from p2pq.testing.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

TASKS = Path(__file__).resolve().parents[1] / "cli"  # exec_tasks.py


@pytest.mark.parametrize("through", ["leader", "member"])
def test_every_future_resolves_once_through_a_leader_kill(through):
    with LocalCluster(3, slots=2, extra_args=["--pythonpath", str(TASKS)]) as cluster:
        leader, _ = cluster.leader()
        member = next(i for i in cluster.running_indexes() if i != leader)
        node = cluster.nodes[leader if through == "leader" else member]
        resolved: dict[str, int] = {}
        with p2pq.Executor(node.address, cluster_dir=cluster.cluster_dir) as ex:
            futures = [ex.submit("exec_tasks:pause", 0.02, i) for i in range(300)]
            for f in futures:
                f.add_done_callback(lambda f: resolved.__setitem__(f.id, resolved.get(f.id, 0) + 1))
            wait_for(lambda: sum(f.done() for f in futures) >= 30, 60, "30 results before the kill")
            cluster.kill(leader, signal.SIGKILL)
            values = [f.result(timeout=120) for f in futures]
        assert values == list(range(300))
        assert resolved == {f.id: 1 for f in futures}  # each future's callbacks ran exactly once
        survivor = next(i for i in cluster.running_indexes())
        client = cluster.client(survivor)
        wait_for(lambda: cluster.leader(via=survivor) is not None, 30, "a new leader")
        for f in futures[::15]:  # the cluster's record agrees with what the future said
            view = client.status(f.id)
            assert view["state"] == "succeeded" and view["result"]["value"] == f.result()


def test_blocked_tasks_survive_a_leader_kill_and_run_after_their_dependency():
    with LocalCluster(3, slots=2, extra_args=["--pythonpath", str(TASKS)]) as cluster:
        leader, _ = cluster.leader()
        member = next(i for i in cluster.running_indexes() if i != leader)
        with p2pq.Client(cluster.nodes[member].address, cluster_dir=cluster.cluster_dir) as client:
            first = client.submit_future("exec_tasks:pause", 2.0, "first")
            chain = [client.submit_future("exec_tasks:add", i, after=[first]) for i in range(5)]
            last = client.submit_future("exec_tasks:add", 100, after=chain)
            wait_for(lambda: client.status(last.id)["state"] == "blocked", 15, "the chain blocked")
            cluster.kill(leader, signal.SIGKILL)
            assert first.result(timeout=60) == "first"
            assert [f.result(timeout=60) for f in chain] == list(range(5)) and last.result(timeout=60) == 100
            ended = client.status(first.id)["attempts"][-1]["ended_at"]
            assert all(client.status(f.id)["attempts"][0]["started_at"] >= ended for f in chain)


def test_a_client_whose_node_freezes_goes_on_through_another(monkeypatch):
    from p2pq.net import transport
    monkeypatch.setattr(transport, "CLIENT_SILENCE_S", 2.0)  # 30 s in use: three missed keepalives
    with LocalCluster(3, slots=2, extra_args=["--pythonpath", str(TASKS)]) as cluster:
        leader, _ = cluster.leader()
        member = next(i for i in cluster.running_indexes() if i != leader)
        with p2pq.Executor(cluster.nodes[member].address, cluster_dir=cluster.cluster_dir) as ex:
            futures = [ex.submit("exec_tasks:pause", 0.05, i) for i in range(100)]
            wait_for(lambda: sum(f.done() for f in futures) >= 10, 60, "10 results before the freeze")
            cluster.kill(member, signal.SIGSTOP)  # sockets open, no reset: only silence tells
            try:
                assert [f.result(timeout=60) for f in futures] == list(range(100))
            finally:
                cluster.kill(member, signal.SIGCONT)
