"""G5 against real node processes: hostile requests from a valid identity, and a rogue node.

Hypothesis makes the messages (tests/strategies.py): valid messages of
every type with values anywhere inside them replaced by extreme ones. A
client identity sends them over a real TLS connection, a node identity
sends them as a peer would; after every batch the cluster must still lead
and acknowledge a submit. P2PQ_FUZZ_EXAMPLES sets the number of batches
(default 30); the counts by type are printed with -s.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pq.core.messages import MESSAGE_TYPES
from p2pq.net.framing import encode_frame, read_frame
from p2pq.net.pki import client_context, ensure_identity
from p2pq.net.transport import Transport, open_client
from p2pq.testing.cluster import LocalCluster, wait_for

from strategies import hostile_messages

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("P2PQ_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
batches = st.lists(hostile_messages(), min_size=1, max_size=10)


class Loop:
    """An event loop on its own thread, for async clients inside synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout_s: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def cluster():
    with LocalCluster(3, slots=1) as c:
        yield c


def tracebacks(cluster) -> list[str]:
    return [n.node_id for n in cluster.nodes if "Traceback" in n.log_path.read_text(errors="replace")]


def leader_term(cluster) -> tuple[str, str]:
    view = cluster.view(0)
    return view["leader"], view["term"]


def serves(cluster, via: int = 0) -> None:
    """The cluster acknowledges a submit (the client retries through elections within its deadline)."""
    assert cluster.client(via).submit("noop")


def label(wire: dict) -> str:
    return wire["type"] if wire.get("type") in MESSAGE_TYPES else "(unknown type)"


def report(title: str, sent: collections.Counter, answers: collections.Counter) -> None:
    print(f"\n{title}: {sum(sent.values())} messages")
    for kind, n in sorted(sent.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:>16} {n}")
    if answers:
        print("  answers:", dict(answers))


def test_hostile_client_requests_through_a_follower_are_refused_and_the_leader_stays(cluster, tmp_path):
    leader_before = leader_term(cluster)
    follower = next(i for i, n in enumerate(cluster.nodes) if n.node_id != leader_before[0])
    identity = ensure_identity(cluster.cluster_dir, tmp_path / "ids", "client-fuzz", "client")
    loop, sent, answers = Loop(), collections.Counter(), collections.Counter()
    channel = loop.run(open_client("127.0.0.1", cluster.nodes[follower].port, identity))

    async def ask_all(wires):
        return await asyncio.gather(*(channel.request(w, timeout_s=20) for w in wires))

    @FUZZ
    @given(batches)
    def fuzz(wires):
        for w in wires:
            w.pop("req", None)  # the tag the client matches replies by (its own test is below)
            sent[label(w)] += 1
        for reply in loop.run(ask_all(wires)):
            answers["ok" if reply.get("ok") else reply.get("error")] += 1
        serves(cluster, follower)

    try:
        fuzz()
        assert leader_term(cluster) == leader_before  # never a failover: nothing reached the core that hurt it
        assert all(cluster.nodes[i].running for i in range(3))
        assert tracebacks(cluster) == []
    finally:
        loop.run(channel.close())
        loop.close()
    report("client path", sent, answers)
    assert answers["invalid"] > 0


def test_a_request_with_a_bad_tag_is_refused_in_one_line(cluster, tmp_path):
    identity = ensure_identity(cluster.cluster_dir, tmp_path / "ids", "client-raw", "client")

    async def raw():
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.nodes[0].port,
                                                       ssl=client_context(identity))
        writer.write(encode_frame({"type": "hello", "version": 1, "node_id": identity.name, "kind": "client"}))
        await read_frame(reader)
        writer.write(encode_frame({"type": "wait", "task_id": "t", "req": [[1] * 100]}))
        writer.write(encode_frame({"type": "submit", "req": "r2", "tasks": [[5, {"kind": "builtin",
                                                                                "target": "echo"}]]}))
        replies = [await read_frame(reader), await read_frame(reader)]
        writer.close()
        return replies
    first, second = asyncio.run(raw())
    assert (first["req"], first["error"]) == (None, "invalid") and "req must be" in first["message"]
    assert (second["req"], second["error"]) == ("r2", "invalid") and "task id" in second["message"]
    serves(cluster)


def test_a_rogue_node_with_hostile_messages_never_takes_a_node_down(cluster, tmp_path):
    identity = ensure_identity(cluster.cluster_dir, tmp_path / "ids", "rogue", "node")
    loop, sent = Loop(), collections.Counter()
    rogue = Transport(node_id="rogue", identity=identity, host="127.0.0.1", port=0,
                      hello_extra={"priority": 0, "listen": ["127.0.0.1", 1]},
                      on_peer_message=lambda *a: None, on_peer_hello=lambda *a: None,
                      on_client_message=lambda *a: None)
    loop.run(rogue.start())
    for n in cluster.nodes:
        rogue.set_address(n.node_id, "127.0.0.1", n.port)

    def send_all(wires):
        for n in cluster.nodes:
            for w in wires:
                rogue.send(n.node_id, w)

    @FUZZ
    @given(batches)
    def fuzz(wires):
        for w in wires:
            sent[label(w)] += 1
        loop.loop.call_soon_threadsafe(send_all, wires)
        wait_for(lambda: all(rogue.queued_frames(n.node_id) == 0 for n in cluster.nodes), 10,
                 "the rogue's frames to leave")
        serves(cluster)

    try:
        fuzz()
        assert all(cluster.nodes[i].running for i in range(3))
        assert tracebacks(cluster) == []
    finally:
        loop.run(rogue.close())
        loop.close()
    report("node path (sent to each of 3 nodes)", sent, collections.Counter())


def test_a_burst_of_malformed_requests_changes_no_leadership(cluster, tmp_path):
    """Issue 12's flood: 600 malformed queries at the leader, mixed with real submits."""
    before = leader_term(cluster)
    leader = next(i for i, n in enumerate(cluster.nodes) if n.node_id == before[0])
    identity = ensure_identity(cluster.cluster_dir, tmp_path / "ids", "client-flood", "client")
    bad = [{"type": "query", "what": "task", "params": "x"}, {"type": "query", "what": "list", "params": {"limit": "abc"}},
           {"type": "wait", "task_id": [1]}, {"type": "cancel", "task_id": {"a": 1}},
           {"type": "submit", "tasks": [["t", {"kind": "builtin", "target": "noop", "timeout_s": "abc"}]]},
           {"type": "submit", "tasks": [["t", {"kind": "builtin", "target": "noop", "priority": 2**64 - 1}]]}]

    async def flood():
        channel = await open_client("127.0.0.1", cluster.nodes[leader].port, identity)
        try:
            return await asyncio.gather(*(channel.request(dict(bad[i % len(bad)]), timeout_s=20)
                                          for i in range(600)))
        finally:
            await channel.close()
    replies = asyncio.run(flood())
    assert {r["error"] for r in replies} == {"invalid"}
    for _ in range(5):
        serves(cluster, leader)
    wait_for(lambda: all(n["alive"] for n in cluster.view(0)["members"]), 10, "every node alive")
    assert leader_term(cluster) == before
