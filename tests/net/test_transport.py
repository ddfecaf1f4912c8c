"""The TLS transport on 127.0.0.1: messaging, seeds, clients, reconnection, G5."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from p2pq.net.framing import FrameError, encode_frame, read_frame
from p2pq.net.pki import Identity, client_context, ensure_identity, init_cluster
from p2pq.net.transport import (
    ChannelClosed,
    ClientConnection,
    HandshakeRejected,
    NodeUnreachable,
    RequestTimeout,
    TLSFailed,
    Transport,
    TransportError,
    _Backoff,
    open_client,
)

HOST = "127.0.0.1"


def run(coro: Awaitable[Any], timeout_s: float = 60) -> Any:
    """Run one async test body with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10,
                     what: str | Callable[[], Any] = "") -> None:
    """Poll condition until true; fail the test at the deadline (never a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out waiting for {detail or condition}")
        await asyncio.sleep(0.005)


class Node:
    """A Transport plus what its callbacks saw."""

    def __init__(self, cluster: Path, node_id: str, *, port: int = 0, **options: Any) -> None:
        self.node_id = node_id
        self.identity = ensure_identity(cluster, cluster.parent / "ids", node_id, "node")
        self.inbox: list[tuple[str, dict]] = []
        self.hellos: list[tuple[str, dict]] = []
        self.client_requests: list[dict] = []
        self.reply_to_clients = True
        self.transport = Transport(
            node_id=node_id, identity=self.identity, host=HOST, port=port,
            hello_extra={"priority": 5, "listen": [HOST, port]},
            on_peer_message=self._on_peer,
            on_peer_hello=lambda peer, hello: self.hellos.append((peer, hello)),
            on_client_message=self._on_client,
            **options,
        )
        self.port = port

    def _on_peer(self, peer: str, message: dict) -> None:
        self.inbox.append((peer, message))
        if message["type"] == "boom":
            raise RuntimeError("handler bug")

    def _on_client(self, conn: ClientConnection, message: dict) -> None:
        self.client_requests.append(message)
        if message["type"] == "flood":  # more than socket buffers hold
            for i in range(message["n"]):
                conn.send({"type": "chunk", "i": i, "blob": b"\0" * (1 << 20)})
        elif self.reply_to_clients:
            conn.send({"type": "reply", "req": message["req"], "echo": message, "client": conn.name})

    async def start(self) -> "Node":
        self.port = await self.transport.start()
        return self

    def messages_from(self, peer: str) -> list[dict]:
        return [msg for sender, msg in self.inbox if sender == peer]


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    init_cluster(tmp_path / "cluster")
    return tmp_path / "cluster"


def client_identity(cluster: Path, name: str = "client-1") -> Identity:
    return ensure_identity(cluster, cluster.parent / "ids", name, "client")


async def pair(cluster: Path, **options: Any) -> tuple[Node, Node]:
    a = await Node(cluster, "node-a", **options).start()
    b = await Node(cluster, "node-b", **options).start()
    a.transport.set_address("node-b", HOST, b.port)
    b.transport.set_address("node-a", HOST, a.port)
    return a, b


async def exchange(a: Node, b: Node, tag: str) -> None:
    """Both directions deliver a message tagged tag."""
    a.transport.send(b.node_id, {"type": "ping", "tag": tag})
    b.transport.send(a.node_id, {"type": "ping", "tag": tag})
    await wait_until(lambda: {"type": "ping", "tag": tag} in b.messages_from(a.node_id), what=f"{tag} a->b")
    await wait_until(lambda: {"type": "ping", "tag": tag} in a.messages_from(b.node_id), what=f"{tag} b->a")


# --- messaging ---------------------------------------------------------------


def test_two_transports_exchange_messages_both_ways(cluster: Path) -> None:
    async def body() -> None:
        a, b = await pair(cluster)
        try:
            await exchange(a, b, "first")
            for i in range(20):
                a.transport.send("node-b", {"type": "seq", "i": i, "blob": b"\x00\xff"})
            await wait_until(lambda: len(b.messages_from("node-a")) == 21)
            assert [m["i"] for m in b.messages_from("node-a")[1:]] == list(range(20))
            assert b.messages_from("node-a")[1]["blob"] == b"\x00\xff"
            assert a.transport.connected_peers() == {"node-b"}
            assert b.transport.connected_peers() == {"node-a"}
            hello = dict(b.hellos)["node-a"]
            assert hello["node_id"] == "node-a" and hello["priority"] == 5
            assert hello["version"] == 1
            assert a.transport.stats.dials == 1 and a.transport.stats.frames_out == 21
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_dial_seed_learns_the_peer_id_and_carries_earlier_messages(cluster: Path) -> None:
    async def body() -> None:
        a = await Node(cluster, "node-a").start()
        b = await Node(cluster, "node-b").start()
        try:
            # Queued before anyone knows where node-b is: kept until the seed names it.
            a.transport.send("node-b", {"type": "early"})
            a.transport.dial_seed(HOST, b.port)
            a.transport.dial_seed(HOST, a.port)  # --peer lists often include the node itself
            await wait_until(lambda: any(peer == "node-b" for peer, _ in a.hellos), what="hello")
            await wait_until(lambda: b.messages_from("node-a") == [{"type": "early"}])
            a.transport.send("node-b", {"type": "later"})
            await wait_until(lambda: len(b.messages_from("node-a")) == 2)
            assert a.transport.stats.dials == 1  # one connection, reused for the peer
            await wait_until(lambda: not a.transport._seeds, what="self-seed dropped")
            assert a.transport.connected_peers() == {"node-b"}
            # Seeding a peer we already talk to adds no second link.
            a.transport.dial_seed(HOST, b.port)
            await wait_until(lambda: b.transport.stats.refused["closed"] == 1, what="seed stops")
            await wait_until(lambda: not a.transport._seeds, what="seed dropped")
            assert a.transport.stats.dials == 1
            a.transport.send("node-b", {"type": "last"})
            await wait_until(lambda: len(b.messages_from("node-a")) == 3)
            assert len(a.transport._links) == 1
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_client_request_and_response(cluster: Path) -> None:
    async def body() -> None:
        node = await Node(cluster, "node-a").start()
        channel = await open_client(HOST, node.port, client_identity(cluster), timeout_s=5)
        try:
            assert channel.node_name == "node-a"
            reply = await channel.request({"type": "status", "req": "q1"})
            assert reply == {"type": "reply", "req": "q1", "client": "client-1",
                             "echo": {"type": "status", "req": "q1"}}
            replies = await asyncio.gather(*(channel.request({"type": "ls", "n": i})
                                             for i in range(50)))
            assert [r["echo"]["n"] for r in replies] == list(range(50))
            # Clients are not peers: the node never treats them as nodes.
            assert node.inbox == [] and node.transport.connected_peers() == set()
            with pytest.raises(TransportError, match="request not sent: frame of"):
                await channel.request({"type": "huge", "blob": b"\0" * (17 << 20)})
            node.reply_to_clients = False
            with pytest.raises(RequestTimeout, match=r"no reply from 127\.0\.0\.1:\d+ within 0\.2 s"):
                await channel.request({"type": "slow"}, timeout_s=0.2)
        finally:
            await channel.close()
            await node.transport.close()

    run(body())


def test_client_errors_are_one_clear_line(cluster: Path, tmp_path: Path) -> None:
    async def body() -> None:
        node = await Node(cluster, "node-a").start()
        port = node.port
        try:
            init_cluster(tmp_path / "other")
            foreign = ensure_identity(tmp_path / "other", tmp_path / "other-ids", "client-x", "client")
            with pytest.raises(TLSFailed, match="TLS handshake failed: is this node in the same cluster"):
                await open_client(HOST, port, foreign, timeout_s=5)
            with pytest.raises(HandshakeRejected, match="protocol version 99 is not supported"):
                await open_client(HOST, port, client_identity(cluster), timeout_s=5, protocol_version=99)
        finally:
            await node.transport.close()
        with pytest.raises(NodeUnreachable, match=f"connection refused: no p2pq node at {HOST}:{port}"):
            await open_client(HOST, port, client_identity(cluster), timeout_s=5)

    run(body())


def test_many_small_sends_are_coalesced_and_ordered(cluster: Path) -> None:
    async def body() -> None:
        a, b = await pair(cluster)
        try:
            await exchange(a, b, "warm-up")
            writes_before = a.transport.stats.writes
            frames_before = a.transport.stats.frames_out
            for i in range(10_000):  # no await: all pending when the writer wakes
                a.transport.send("node-b", {"type": "n", "i": i})
            await wait_until(lambda: len(b.messages_from("node-a")) == 10_001, what="10k messages")
            assert [m["i"] for m in b.messages_from("node-a")[1:]] == list(range(10_000))
            writes = a.transport.stats.writes - writes_before
            frames = a.transport.stats.frames_out - frames_before
            assert frames == 10_000
            assert writes <= 10, f"{frames} frames took {writes} writes"
            assert a.transport.stats.frames_dropped == 0
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_full_outbox_drops_the_oldest(cluster: Path) -> None:
    async def body() -> None:
        a = await Node(cluster, "node-a", max_queued_frames=100).start()
        try:
            for i in range(150):  # node-b has no address: everything stays queued
                a.transport.send("node-b", {"type": "n", "i": i})
            assert a.transport.queued_frames("node-b") == 100
            assert a.transport.stats.frames_dropped == 50
            b = await Node(cluster, "node-b").start()
            a.transport.set_address("node-b", HOST, b.port)
            await wait_until(lambda: len(b.messages_from("node-a")) == 100)
            assert [m["i"] for m in b.messages_from("node-a")] == list(range(50, 150))
            await b.transport.close()
        finally:
            await a.transport.close()

    run(body())


def test_a_forgotten_peer_is_no_longer_dialed_and_its_frames_are_dropped(cluster: Path) -> None:
    from p2pq.testing.cluster import free_ports

    async def body() -> None:
        (port,) = free_ports(1)
        a = await Node(cluster, "node-a").start()
        try:
            a.transport.set_address("node-b", HOST, port)  # nothing listens there
            for i in range(10):
                a.transport.send("node-b", {"type": "n", "i": i})
            await wait_until(lambda: a.transport.stats.dial_failures >= 1, what="a failed dial")
            a.transport.forget_peer("node-b")
            assert a.transport.queued_frames("node-b") == 0
            links = [t for t in a.transport._tasks if "node-b" in t.get_name()]
            await wait_until(lambda: all(t.done() for t in links), what="the link to stop")
            assert "node-b" not in a.transport.connected_peers()
        finally:
            await a.transport.close()

    run(body())


def test_a_dead_peer_keeps_only_its_newest_frames_and_its_return_wakes_the_link(cluster: Path) -> None:
    """Issue 13: frames for a departed node piled up for hours; it was redialed every 2 s forever."""
    import p2pq.net.transport as transport
    from p2pq.testing.cluster import free_ports

    async def body() -> None:
        saved = transport.LONG_OUTAGE_S, transport.LONG_OUTAGE_BACKOFF_S
        transport.LONG_OUTAGE_S, transport.LONG_OUTAGE_BACKOFF_S = 0.2, 120.0
        (port,) = free_ports(1)
        a = await Node(cluster, "node-a").start()
        try:
            a.transport.set_address("node-b", HOST, port)  # nothing listens there yet
            for i in range(5000):
                a.transport.send("node-b", {"type": "n", "i": i})
            assert a.transport.queued_frames("node-b") == transport.MAX_UNSENT_FRAMES
            await wait_until(lambda: a.transport.stats.dial_failures >= 4, what="failed dials")
            started = asyncio.get_running_loop().time()
            b = await Node(cluster, "node-b", port=port).start()
            b.transport.set_address("node-a", HOST, a.port)
            b.transport.send("node-a", {"type": "back"})  # its hello reaches node-a first
            await wait_until(lambda: len(b.messages_from("node-a")) == transport.MAX_UNSENT_FRAMES,
                             timeout_s=20, what="the queued frames")
            assert asyncio.get_running_loop().time() - started < 20  # not the 60-120 s backoff
            assert [m["i"] for m in b.messages_from("node-a")] == list(range(5000 - transport.MAX_UNSENT_FRAMES, 5000))
            await b.transport.close()
        finally:
            transport.LONG_OUTAGE_S, transport.LONG_OUTAGE_BACKOFF_S = saved
            await a.transport.close()

    run(body())


def test_reconnects_after_the_peer_restarts_on_the_same_port(cluster: Path) -> None:
    async def body() -> None:
        a, b = await pair(cluster)
        try:
            await exchange(a, b, "before")
            port = b.port
            await b.transport.close()
            await wait_until(lambda: "node-b" not in a.transport.connected_peers(), what="drop seen")
            for i in range(5):  # queued while node-b is down
                a.transport.send("node-b", {"type": "queued", "i": i})
            b = await Node(cluster, "node-b", port=port).start()
            b.transport.set_address("node-a", HOST, a.port)
            await wait_until(lambda: len(b.messages_from("node-a")) == 5, what="queued after restart")
            assert [m["i"] for m in b.messages_from("node-a")] == list(range(5))
            await exchange(a, b, "after")
            assert a.transport.stats.dials >= 2
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_a_peer_whose_port_refuses_is_reported_soon_after_its_connection_drops(cluster: Path) -> None:
    async def body() -> None:
        refused: list[tuple[str, float]] = []
        loop = asyncio.get_running_loop()
        a = await Node(cluster, "node-a", on_peer_refused=lambda peer: refused.append((peer, loop.time()))).start()
        b = await Node(cluster, "node-b").start()
        a.transport.set_address("node-b", HOST, b.port)
        b.transport.set_address("node-a", HOST, a.port)
        try:
            await exchange(a, b, "before")
            assert refused == []
            await b.transport.close()  # its port closes, as when its process is killed
            closed_at = loop.time()
            await wait_until(lambda: refused, what="a refused redial reported")
            assert refused[0][0] == "node-b"
            assert refused[0][1] - closed_at < 0.5  # the first redial, not a timeout
        finally:
            await a.transport.close()

    run(body())


def test_a_dropped_connection_is_redialed_at_once_even_after_a_long_backoff(cluster: Path) -> None:
    # The peer was down long enough for the backoff to grow, came back, and died
    # again at once (a restarted leader killed again): the refusal must not wait
    # for the grown backoff.
    async def body() -> None:
        refused: list[float] = []
        loop = asyncio.get_running_loop()
        a = await Node(cluster, "node-a", on_peer_refused=lambda peer: refused.append(loop.time())).start()
        probe = await Node(cluster, "node-b").start()
        port = probe.port
        await probe.transport.close()  # a port nobody listens on, for node-b to take later
        a.transport.set_address("node-b", HOST, port)
        a.transport.send("node-b", {"type": "ping", "tag": "early"})
        await wait_until(lambda: len(refused) >= 5, what="five refused dials")  # 0.05+0.1+0.2+0.4 s of backoff
        b = await Node(cluster, "node-b", port=port).start()
        b.transport.set_address("node-a", HOST, a.port)
        try:
            await wait_until(lambda: "node-b" in a.transport.connected_peers(), what="a connected")
            await b.transport.close()
            closed_at, before = loop.time(), len(refused)
            await wait_until(lambda: len(refused) > before, what="the refusal after the drop")
            assert refused[before] - closed_at < 0.3
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_callback_exceptions_are_logged_not_fatal(cluster: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        a, b = await pair(cluster)
        try:
            a.transport.send("node-b", {"type": "boom"})
            a.transport.send("node-b", {"type": "fine"})
            await wait_until(lambda: [m["type"] for m in b.messages_from("node-a")] == ["boom", "fine"])
            assert b.transport.stats.callback_errors == 1
            await exchange(a, b, "still connected")
            assert a.transport.stats.dials == 1  # the connection survived the bug
        finally:
            await a.transport.close()
            await b.transport.close()

    with caplog.at_level(logging.ERROR, logger="p2pq.net"):
        run(body())
    assert any(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)


def test_misuse_fails_fast(cluster: Path) -> None:
    async def body() -> None:
        a = await Node(cluster, "node-a").start()
        try:
            with pytest.raises(FrameError, match="str 'type'"):
                a.transport.send("node-b", {"kind": "no type"})
            with pytest.raises(FrameError, match="exceeds the limit"):
                a.transport.send("node-b", {"type": "big", "blob": b"\0" * (17 * 1024 * 1024)})
            assert a.transport.queued_frames("node-b") == 0
            with pytest.raises(ValueError, match="node identity"):
                Transport(
                    node_id="node-z", identity=a.identity, host=HOST, port=0, hello_extra={},
                    on_peer_message=print, on_peer_hello=print, on_client_message=print)
            with pytest.raises(ValueError, match="client identity"):
                await open_client(HOST, a.port, a.identity, timeout_s=1)
        finally:
            await a.transport.close()

    run(body())


def test_closing_a_channel_fails_pending_requests(cluster: Path) -> None:
    async def body() -> None:
        node = await Node(cluster, "node-a").start()
        node.reply_to_clients = False
        channel = await open_client(HOST, node.port, client_identity(cluster), timeout_s=5)
        try:
            pending = asyncio.ensure_future(channel.request({"type": "never"}))
            await wait_until(lambda: node.client_requests != [])
            await channel.close()
            with pytest.raises(ChannelClosed, match="closed"):
                await pending
            with pytest.raises(ChannelClosed):
                await channel.request({"type": "after close"})
        finally:
            await node.transport.close()

    run(body())


def test_channel_fails_pending_requests_when_the_node_goes_away(cluster: Path) -> None:
    async def body() -> None:
        node = await Node(cluster, "node-a").start()
        node.reply_to_clients = False
        channel = await open_client(HOST, node.port, client_identity(cluster), timeout_s=5)
        try:
            pending = asyncio.ensure_future(channel.request({"type": "never"}))
            await wait_until(lambda: node.client_requests != [])
            await node.transport.close()
            with pytest.raises(ChannelClosed, match="lost"):
                await pending
        finally:
            await channel.close()

    run(body())


# --- G5: bad input closes one connection, never the node ---------------------


async def raw_tls(port: int, identity: Identity) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port, ssl=client_context(identity))


async def established(port: int, identity: Identity) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TLS connection past the hellos."""
    r, w = await raw_tls(port, identity)
    w.write(encode_frame(hello_for(identity)))
    await read_frame(r)
    return r, w


async def serves_clients(node: "Node", identity: Identity) -> None:
    channel = await open_client(HOST, node.port, identity, timeout_s=5)
    assert (await channel.request({"type": "still serving"}))["type"] == "reply"
    await channel.close()


def hello_for(identity: Identity, **overrides: Any) -> dict:
    return {"type": "hello", "version": 1, "node_id": identity.name, "kind": identity.kind, **overrides}


async def refused_after(node: Node, reason: str, attack: Callable[[], Awaitable[Any]]) -> None:
    """Run attack and wait until node counts one more refusal for reason."""
    before = node.transport.stats.refused[reason]
    writers = await attack()
    await wait_until(lambda: node.transport.stats.refused[reason] == before + 1, what=reason)
    for writer in writers or []:
        writer.transport.abort()


def test_bad_connections_are_refused_and_the_node_keeps_serving(
    cluster: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    init_cluster(tmp_path / "evil")
    evil = ensure_identity(tmp_path / "evil", tmp_path / "evil-ids", "node-x", "node")
    intruder_client = ensure_identity(tmp_path / "evil", tmp_path / "evil-ids", "client-x", "client")

    async def body() -> None:
        a, b = await pair(cluster, handshake_timeout_s=0.5)
        mallory = ensure_identity(cluster, cluster.parent / "ids", "node-m", "node")
        port = b.port

        async def plain_garbage():
            _, w = await asyncio.open_connection(HOST, port)
            w.write(b"GET / HTTP/1.0\r\n\r\n" + b"\xff" * 100)
            return [w]

        async def foreign_ca_both_ways():
            # The intruder's own context trusts only its CA, so it hangs up
            # on our certificate: the node sees a failed TLS handshake.
            for identity in (evil, intruder_client):
                try:
                    _, w = await raw_tls(port, identity)
                    w.transport.abort()
                except (ssl.SSLError, OSError):
                    pass
            return []

        async def foreign_certificate():
            # A smarter intruder accepts any server but can only show a
            # certificate from another CA: the node's verification refuses it.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.load_cert_chain(evil.cert_path, evil.key_path)
            try:
                _, w = await asyncio.open_connection(HOST, port, ssl=ctx)
                w.write(encode_frame(hello_for(evil)))
                return [w]
            except (ssl.SSLError, OSError):
                return []

        async def garbage_frame():
            _, w = await raw_tls(port, mallory)
            w.write(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
            return [w]

        async def oversized():
            _, w = await raw_tls(port, mallory)
            w.write(struct.pack(">I", 0xFFFFFFFF))
            return [w]

        async def not_a_hello():
            _, w = await raw_tls(port, mallory)
            w.write(encode_frame({"type": "heartbeat", "term": 99}))
            return [w]

        async def lying_hello():  # certificate says node-m, hello claims node-a
            _, w = await raw_tls(port, mallory)
            w.write(encode_frame(hello_for(mallory, node_id="node-a")))
            return [w]

        async def client_posing_as_node():
            client = client_identity(cluster)
            _, w = await raw_tls(port, client)
            w.write(encode_frame(hello_for(client, kind="node")))
            return [w]

        async def wrong_version():
            r, w = await raw_tls(port, mallory)
            w.write(encode_frame(hello_for(mallory, version=2)))
            reply = await read_frame(r)
            assert reply["type"] == "error" and "protocol version 2" in reply["reason"]
            return [w]

        async def silent_tls():
            _, w = await raw_tls(port, mallory)
            return [w]

        async def silent_tcp():
            _, w = await asyncio.open_connection(HOST, port)
            return [w]

        async def half_frame_then_close():
            _, w = await raw_tls(port, mallory)
            w.write(struct.pack(">I", 100) + b"\x81")
            w.close()
            return []

        try:
            await exchange(a, b, "before")
            await refused_after(b, "tls", plain_garbage)
            await exchange(a, b, "after plain tcp")
            before = b.transport.stats.refused["tls"]
            await foreign_ca_both_ways()
            await wait_until(lambda: b.transport.stats.refused["tls"] == before + 2, what="foreign CA")
            await refused_after(b, "certificate", foreign_certificate)
            await exchange(a, b, "after foreign CA")
            for reason, attack in [("frame", garbage_frame), ("frame", oversized),
                                   ("hello", not_a_hello), ("hello", lying_hello),
                                   ("hello", client_posing_as_node), ("version", wrong_version),
                                   ("timeout", silent_tls), ("timeout", silent_tcp),
                                   ("closed", half_frame_then_close)]:
                await refused_after(b, reason, attack)
                await exchange(a, b, f"after {attack.__name__}")
            assert b.transport.connected_peers() == {"node-a"}
            assert "node-m" not in b.transport.connected_peers()
            assert not any(peer == "node-m" for peer, _ in b.hellos)
        finally:
            await a.transport.close()
            await b.transport.close()

    with caplog.at_level(logging.WARNING, logger="p2pq.net"):
        run(body())
    messages = " | ".join(r.getMessage() for r in caplog.records)
    for needle in ["refused connection from", "exceeds the limit", "protocol version 2",
                   "no handshake within 0.5 s", "untrusted certificate"]:
        assert needle in messages


def test_bad_frame_on_an_established_connection_drops_only_that_connection(cluster: Path) -> None:
    async def body() -> None:
        a, b = await pair(cluster)
        mallory = ensure_identity(cluster, cluster.parent / "ids", "node-m", "node")
        try:
            await exchange(a, b, "before")
            r, w = await raw_tls(b.port, mallory)
            w.write(encode_frame(hello_for(mallory)))
            assert (await read_frame(r))["node_id"] == "node-b"
            await wait_until(lambda: "node-m" in b.transport.connected_peers())
            w.write(encode_frame({"type": "ok"}) + struct.pack(">I", 1 << 31))
            await wait_until(lambda: b.transport.stats.refused["frame"] == 1)
            await wait_until(lambda: "node-m" not in b.transport.connected_peers())
            assert b.messages_from("node-m") == [{"type": "ok"}]
            w.transport.abort()
            await exchange(a, b, "after")
        finally:
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_a_newer_inbound_connection_from_the_same_node_replaces_the_old(cluster: Path) -> None:
    async def body() -> None:
        b = await Node(cluster, "node-b").start()
        mallory = ensure_identity(cluster, cluster.parent / "ids", "node-m", "node")
        try:
            r1, w1 = await raw_tls(b.port, mallory)
            w1.write(encode_frame(hello_for(mallory)))
            await read_frame(r1)
            r2, w2 = await raw_tls(b.port, mallory)
            w2.write(encode_frame(hello_for(mallory)))
            await read_frame(r2)
            assert await r1.read() == b""  # the old one is closed by the node
            w2.write(encode_frame({"type": "via-new"}))
            await wait_until(lambda: b.messages_from("node-m") == [{"type": "via-new"}])
            assert b.transport.connected_peers() == {"node-m"}
            w1.transport.abort()
            w2.transport.abort()
        finally:
            await b.transport.close()

    run(body())


def test_a_client_that_never_reads_is_dropped_after_the_write_timeout(cluster: Path) -> None:
    async def body() -> None:
        node = await Node(cluster, "node-a", write_timeout_s=0.5).start()
        client = client_identity(cluster)
        try:
            r, w = await established(node.port, client)
            w.write(encode_frame({"type": "flood", "n": 64}))  # then never read again
            await wait_until(lambda: node.transport.stats.refused["slow"] == 1, what="slow")
            w.transport.abort()
            await serves_clients(node, client)
        finally:
            await node.transport.close()

    run(body())


def test_a_silent_connection_after_a_valid_hello_is_dropped_at_the_idle_limit(cluster: Path) -> None:
    """G5: a client (or node) that says hello and then nothing is not kept forever."""
    async def body() -> None:
        node = await Node(cluster, "node-a", idle_timeout_s=0.3).start()
        client = client_identity(cluster)
        try:
            r, w = await established(node.port, client)
            await wait_until(lambda: node.transport.stats.refused["idle"] == 1, what="idle")
            assert await r.read() == b""  # closed by the node
            w.transport.abort()
            await serves_clients(node, client)
        finally:
            await node.transport.close()

    run(body())


def test_keepalives_hold_quiet_links_and_channels_open_past_the_idle_limit(cluster: Path) -> None:
    async def body() -> None:
        import p2pq.net.transport as transport
        a, b = await pair(cluster, idle_timeout_s=1.0, keepalive_s=0.1)
        saved, transport.KEEPALIVE_S = transport.KEEPALIVE_S, 0.1
        try:
            await exchange(a, b, "first")
            channel = await open_client(HOST, b.port, client_identity(cluster), timeout_s=5)
            started = asyncio.get_running_loop().time()
            await wait_until(lambda: asyncio.get_running_loop().time() - started > 2.5, timeout_s=5)
            assert b.transport.stats.refused["idle"] == 0 and a.transport.stats.refused["idle"] == 0
            assert (await channel.request({"type": "still here"}))["type"] == "reply"
            await exchange(a, b, "second")
            assert {m["type"] for m in b.messages_from("node-a")} == {"ping"}  # keepalives never delivered
            await channel.close()
        finally:
            transport.KEEPALIVE_S = saved
            await a.transport.close()
            await b.transport.close()

    run(body())


def test_two_nodes_with_one_id_are_told_apart_and_the_newer_one_is_stopped(cluster: Path, tmp_path: Path) -> None:
    """Issue 13: cloned machines shared an id and silently split the cluster."""
    async def body() -> None:
        stopped: dict[str, list[str]] = {"first": [], "second": []}
        first = await Node(cluster, "node-a", on_duplicate_id=stopped["first"].append).start()
        twin_identity = ensure_identity(cluster, tmp_path / "twin-ids", "node-a", "node")
        second = Node(cluster, "node-b", on_duplicate_id=stopped["second"].append)
        second.transport = Transport(node_id="node-a", identity=twin_identity, host=HOST, port=0,
                                     hello_extra={"priority": 5, "listen": [HOST, 0]},
                                     on_peer_message=lambda *a: None, on_peer_hello=lambda *a: None,
                                     on_client_message=lambda *a: None,
                                     on_duplicate_id=stopped["second"].append)
        await second.transport.start()
        try:
            second.transport.dial_seed(HOST, first.port)  # a --peer seed reaches the twin
            await wait_until(lambda: stopped["second"], what="the newer twin told to stop")
            assert stopped["first"] == []
            assert "already taken" in stopped["second"][0] and "--node-id" in stopped["second"][0]
            assert first.transport.stats.refused["duplicate_id"] == 1
            first.transport.dial_seed(HOST, first.port)  # a seed that is the node itself stays quiet
            await wait_until(lambda: not first.transport._seeds, what="self-seed dropped")
            assert stopped["first"] == [] and first.transport.stats.refused["self"] == 1
        finally:
            await first.transport.close()
            await second.transport.close()

    run(body())


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = _Backoff(random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(10)]
    nominal = [min(0.05 * 2**i, 2.0) for i in range(10)]
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal)), delays
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay_s() <= 0.05
    again = _Backoff(random.Random(7))
    assert [again.next_delay_s() for _ in range(10)] == delays  # the rng decides


def test_close_cancels_every_task(cluster: Path) -> None:
    async def body() -> None:
        baseline = asyncio.all_tasks()
        a, b = await pair(cluster)
        await exchange(a, b, "x")
        a.transport.send("node-nowhere", {"type": "lost"})  # a link waiting for an address
        a.transport.set_address("node-dead", HOST, 1)
        a.transport.send("node-dead", {"type": "lost"})  # a link in backoff
        a.transport.dial_seed(HOST, 1)
        await a.transport.close()
        await b.transport.close()
        assert not a.transport._tasks and not b.transport._tasks
        leftovers = asyncio.all_tasks() - baseline
        assert not [t for t in leftovers if not t.done()], leftovers

    run(body())


def test_a_backlog_of_big_frames_lets_the_loop_run_timers_in_between() -> None:
    """Issue 13: a reader decoding a big table's parts back to back starved the heartbeat timer."""
    from types import SimpleNamespace

    from p2pq.net.framing import ConnectionClosed
    from p2pq.net.transport import TransportStats

    async def body() -> None:
        reader = asyncio.StreamReader()
        frame = encode_frame({"type": "part", "blob": "x" * 100_000}, 1 << 24)
        for _ in range(40):  # 4 MB already buffered: read() never waits on the socket
            reader.feed_data(frame)
        reader.feed_eof()
        delivered: list[int] = []
        timer_saw: list[int] = []
        fake = SimpleNamespace(stats=TransportStats(), _max_frame_bytes=1 << 24,
                               _call=lambda what, fn, *args: fn(*args))
        asyncio.get_running_loop().call_soon(lambda: timer_saw.append(len(delivered)))
        with pytest.raises(ConnectionClosed):
            await Transport._read_loop(fake, reader, lambda m: delivered.append(1))
        assert len(delivered) == 40
        assert timer_saw and timer_saw[0] < 40

    run(body())
