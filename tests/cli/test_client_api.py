"""The Python API: every mistake is a P2PQError with one clear line, found before anything is sent."""

from __future__ import annotations

import math
import socket
import time

import pytest

from p2pq.client import AsyncClient, Client, InvalidRequest, P2PQError, make_spec


@pytest.fixture
def client(tmp_path):
    # No node listens here: every call below must fail before it dials.
    c = Client("127.0.0.1:9", cluster_dir=tmp_path, timeout_s=2)
    yield c
    c.close()


@pytest.mark.parametrize("call, words", [
    (lambda c: c.submit_spec(make_spec("echo", ["x"]), task_id=5), "task id"),
    (lambda c: c.submit_spec(make_spec("echo", ["x"]), task_id="a b"), "task id"),
    (lambda c: c.status(["t1"]), "id"),
    (lambda c: c.cancel({"a": 1}), "task_id"),
    (lambda c: c.list(limit="abc"), "limit must be an integer"),
    (lambda c: c.list(limit=0), "limit must be between"),
    (lambda c: c.list(state="nope"), "state must be one of"),
    (lambda c: c.result("t1", wait=True, timeout_s="abc"), "timeout_s must be a number"),
])
def test_bad_calls_raise_invalid_request_without_dialing(client, call, words):
    with pytest.raises(InvalidRequest) as err:
        call(client)
    assert err.value.code == "invalid" and words in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    ({"priority": 2**70}, "priority must be between"),
    ({"priority": 1.5}, "priority must be an integer"),
    ({"timeout_s": math.nan}, "timeout_s"),
    ({"timeout_s": math.inf}, "timeout_s"),
    ({"retries": -1}, "retries"),
])
def test_make_spec_refuses_out_of_range_options(kwargs, words):
    with pytest.raises(InvalidRequest) as err:
        make_spec("echo", ["x"], **kwargs)
    assert words in str(err.value) and isinstance(err.value, (P2PQError, ValueError))


def test_bytes_and_unencodable_arguments_are_refused():
    with pytest.raises(InvalidRequest, match="not a JSON value"):
        make_spec("echo", [b"\x00"])
    with pytest.raises(InvalidRequest, match="beyond 64 bits"):
        make_spec("echo", [2**100])
    with pytest.raises(InvalidRequest, match="must be a string"):
        make_spec(5)


def test_a_bad_address_is_an_invalid_request(tmp_path):
    with pytest.raises(InvalidRequest, match="bad node address"):
        AsyncClient("host:notaport", cluster_dir=tmp_path)


def test_a_refused_connection_fails_at_once_with_its_one_line(tmp_path):
    from p2pq.net.pki import init_cluster
    init_cluster(tmp_path)
    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with Client(f"127.0.0.1:{port}", cluster_dir=tmp_path, timeout_s=15) as c:
        started = time.monotonic()
        with pytest.raises(P2PQError, match="connection refused") as err:
            c.submit("echo", "x")
    assert err.value.code == "unreachable" and not err.value.transient
    assert time.monotonic() - started < 5  # not the 15 s deadline: nobody listens, waiting will not help
