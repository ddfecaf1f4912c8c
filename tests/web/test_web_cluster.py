"""The HTTP API and `p2pq top` on a real 3-node cluster: forwarding, the stream, a failover."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from p2pq.testing.cluster import wait_for

from webcluster import WebCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with WebCluster(3, slots=2) as c:
        yield c


def cluster_view(cluster, index):
    status, body = cluster.http(index, "/api/cluster")
    assert status == 200, body
    return body


def test_every_node_shows_the_cluster_and_a_member_forwards_a_submit(cluster):
    want = {"node3": ("leader", True), "node2": ("follower", True), "node1": ("member", True)}

    def settled():  # the leader picks its follower again as nodes join: wait for the final pick
        view = cluster_view(cluster, 0)  # node1, a plain member
        return view if {m["node"]: (m["role"], m["alive"]) for m in view["members"]} == want else None
    view = wait_for(settled, 10, "node2 to follow node3")
    assert view["leader"] == "node3" and view["role"] == "member" and view["term"].endswith("@node3")
    status, reply = cluster.http(0, "/api/tasks", {"task": "fibonacci", "args": [20]}, token=cluster.token())
    assert status == 201 and reply["leader"] == "node3" and reply["replicated"]

    def finished():
        _, body = cluster.http(0, f"/api/tasks/{reply['id']}")
        return body["task"] if body["task"]["state"] == "succeeded" else None
    task = wait_for(finished, 20, "the forwarded task to finish")
    assert task["result"]["value"] == 6765


def test_the_leaders_metrics_show_replication(cluster):
    with urllib.request.urlopen(cluster.url(2, "/metrics"), timeout=10) as response:
        text = response.read().decode()
    assert 'p2pq_is_leader{node="node3"} 1' in text
    assert 'p2pq_replication_lag{node="node3"}' in text
    assert 'p2pq_peers{node="node3",alive="true"} 3' in text


@pytest.mark.parametrize("how", ["node", "http"])
def test_top_once_draws_the_cluster(cluster, how):
    where = ["--node", cluster.nodes[0].address] if how == "node" else ["--http", cluster.url(0)]
    run = subprocess.run([sys.executable, "-m", "p2pq", "top", "--once", "--cluster-dir", str(cluster.cluster_dir),
                          *where], capture_output=True, text=True, timeout=60, env={"COLUMNS": "160"})
    assert run.returncode == 0, run.stderr
    assert "leader node3" in run.stdout and "seen by node1" in run.stdout
    for name in ("node1", "node2", "node3", "succeeded"):
        assert name in run.stdout


def test_top_json_is_one_snapshot(cluster):
    run = subprocess.run([sys.executable, "-m", "p2pq", "top", "--json", "--cluster-dir", str(cluster.cluster_dir),
                          "--node", cluster.nodes[0].address], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    snap = json.loads(run.stdout)
    assert snap["cluster"]["leader"] == "node3" and {m["node"] for m in snap["cluster"]["members"]} == \
        {"node1", "node2", "node3"} and "tasks" in snap


def test_top_says_so_when_the_node_is_unreachable(cluster):
    run = subprocess.run([sys.executable, "-m", "p2pq", "top", "--once", "--http", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "cannot reach" in run.stderr and "Traceback" not in run.stderr


class StreamReader(threading.Thread):
    """Collects the 'note' events of one node's event stream in the background."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.notes, self.response = url, [], None

    def run(self) -> None:
        self.response = urllib.request.urlopen(self.url, timeout=60)
        kind = None
        for raw in self.response:
            line = raw.decode()
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: ") and kind == "note":
                self.notes.append(json.loads(line[6:]))


def test_after_the_leader_dies_a_member_shows_the_new_leader_and_still_takes_submits(cluster):
    stream = StreamReader(cluster.url(0, "/api/stream"))
    stream.start()
    wait_for(lambda: stream.response is not None, 10, "the stream to open")
    cluster.kill(2, signal.SIGKILL)
    view = wait_for(lambda: (v := cluster_view(cluster, 0))["leader"] == "node2" and v, 10, "node2 to lead")
    assert {m["node"]: m["alive"] for m in view["members"]}["node3"] is False or \
        wait_for(lambda: not next(m for m in cluster_view(cluster, 0)["members"] if m["node"] == "node3")["alive"],
                 10, "node3 to show as down")
    wait_for(lambda: any(n["failover"] and "node2" in n["text"] for n in stream.notes), 10,
             "a failover event on the live stream")
    _, events = cluster.http(0, "/api/events")
    assert any(e["kind"] in ("leader_accepted", "leader_seen") and "node2" in e["text"] for e in events["events"])
    status, reply = cluster.http(0, "/api/tasks", {"task": "noop"}, token=cluster.token())
    assert status == 201 and reply["leader"] == "node2"
