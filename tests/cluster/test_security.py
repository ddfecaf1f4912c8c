"""G5 against a real node process: bad connections are refused and the node keeps serving."""

from __future__ import annotations

import socket
import ssl
import struct
import time

import pytest

from p2pq.client import Client, P2PQError
from p2pq.net.pki import client_context, ensure_identity, init_cluster
from p2pq.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node():
    c = LocalCluster(1, slots=1)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def still_serving(node) -> None:
    view = node.client(0).peers()
    assert view["role"] == "leader" and view["node"] == "node1"


def address(node) -> tuple[str, int]:
    return "127.0.0.1", node.nodes[0].port


def closed_by_peer(sock) -> bool:
    """True once the node has closed the connection (EOF or reset)."""
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return True


def tls_connection(node, tmp_path):
    identity = ensure_identity(node.cluster_dir, tmp_path / "ids", "client-tester", "client")
    raw = socket.create_connection(address(node), timeout=10)
    return client_context(identity).wrap_socket(raw)


def test_plain_tcp_is_refused(node):
    with socket.create_connection(address(node), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_peer(s)
    still_serving(node)


def test_a_certificate_from_another_ca_is_refused(node, tmp_path):
    other = tmp_path / "other-cluster"
    init_cluster(other)
    intruder = Client(f"127.0.0.1:{node.nodes[0].port}", cluster_dir=other, timeout_s=15)
    try:
        started = time.monotonic()
        with pytest.raises(P2PQError) as err:
            intruder.peers()
        assert "same cluster" in str(err.value) or "TLS" in str(err.value)
        assert time.monotonic() - started < 5  # at once: another cluster's node stays one
    finally:
        intruder.close()
    still_serving(node)


def test_a_garbage_frame_is_refused(node, tmp_path):
    with tls_connection(node, tmp_path) as s:
        body = b"\xc1\xc1 not msgpack at all"
        s.sendall(struct.pack(">I", len(body)) + body)
        assert closed_by_peer(s)
    still_serving(node)


def test_an_oversized_length_prefix_is_refused_before_reading(node, tmp_path):
    with tls_connection(node, tmp_path) as s:
        s.sendall(struct.pack(">I", 0xFFFFFFF0))
        assert closed_by_peer(s)
    still_serving(node)


def test_an_unknown_request_type_gets_a_clear_error(node, tmp_path):
    import asyncio

    from p2pq.net.transport import open_client

    async def ask():
        identity = ensure_identity(node.cluster_dir, tmp_path / "ids", "client-tester", "client")
        channel = await open_client(*address(node), identity)
        try:
            return await channel.request({"type": "format_disk"})
        finally:
            await channel.close()
    reply = asyncio.run(ask())
    assert reply["ok"] is False and reply["error"] == "invalid"
    still_serving(node)
