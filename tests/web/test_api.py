"""The HTTP API against one real in-process node: answers, bad input, authority, the event stream.

The node runs on its own event loop thread (one node, loopback only, short
timeouts), so these tests take a couple of seconds, not a cluster's worth.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import time

import pytest

from p2pq.core.types import Config
from p2pq.net.node import NodeRuntime, NodeSettings
from p2pq.net.pki import init_cluster, read_token
from p2pq.testing.cluster import free_ports, wait_for

from webcluster import http_json


class InProcessNode:
    """A NodeRuntime with --http on a private event loop thread."""

    def __init__(self, base) -> None:
        init_cluster(base / "cluster")
        port, self.http_port = free_ports(2)
        config = Config(heartbeat_interval_s=0.05, failure_timeout_s=0.3, slots=2)
        self.runtime = NodeRuntime(NodeSettings(
            cluster_dir=base / "cluster", data_dir=base / "data", host="127.0.0.1", port=port,
            mdns=False, node_id="solo", config=config, http_port=self.http_port))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.runtime.start())
        self.token = read_token(base / "cluster")

    def call(self, coro, timeout_s: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str, **kw) -> tuple[int, dict]:
        return http_json(self.url(path), **kw)

    def post(self, path: str, body=None, token: str | None = "default", **kw) -> tuple[int, dict]:
        return http_json(self.url(path), body if body is not None or "raw" in kw else {},
                         token=self.token if token == "default" else token, **kw)

    def stop(self) -> None:
        self.call(self.runtime.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = InProcessNode(tmp_path_factory.mktemp("web"))
    try:
        wait_for(lambda: n.get("/api/cluster")[1].get("leader") == "solo", 10, "the node to lead")
        yield n
    finally:
        n.stop()


def submit(node, body) -> str:
    status, reply = node.post("/api/tasks", body)
    assert status == 201, reply
    return reply["id"]


def wait_state(node, task_id: str, state: str) -> dict:
    def done():
        status, body = node.get(f"/api/tasks/{task_id}")
        return body["task"] if status == 200 and body["task"]["state"] == state else None
    return wait_for(done, 15, f"task {task_id} to be {state}")


# -- what the API answers ---------------------------------------------------------------

def test_cluster_queue_and_overview_describe_the_node(node):
    status, cluster = node.get("/api/cluster")
    assert status == 200 and cluster["ok"]
    assert cluster["leader"] == "solo" and cluster["role"] == "leader"
    (me,) = cluster["members"]
    assert me["node"] == "solo" and me["self"] and me["alive"] and me["slots"] == 2
    assert me["running"] == 0
    status, queue = node.get("/api/queue")
    assert status == 200 and set(queue["counts"]) == {"blocked", "queued", "running", "succeeded", "failed",
                                                      "cancelled"}
    status, overview = node.get("/api/overview")
    assert status == 200 and overview["cluster"]["leader"] == "solo"
    assert any(e["kind"] == "leader_elected" and "won the election" in e["text"] for e in overview["events"])


def test_a_task_submitted_over_http_runs_and_shows_attempts_and_output(node):
    task_id = submit(node, {"task": "echo", "args": ["hello from http"], "kind": "shell", "priority": 2})
    task = wait_state(node, task_id, "succeeded")
    assert task["priority"] == 2 and task["kind"] == "shell"
    (attempt,) = task["attempts"]
    assert attempt["node"] == "solo" and attempt["outcome"] == "succeeded"
    status, out = node.get(f"/api/tasks/{task_id}/output?tail=5")
    assert status == 200 and out["stdout"] == "http\n" and out["stdout_truncated"]
    status, listing = node.get("/api/tasks?state=succeeded&limit=1")
    assert status == 200 and listing["tasks"][0]["id"] == task_id
    assert "stdout" not in listing["tasks"][0]["result"]  # lists carry no output, the detail does
    assert listing["tasks"][0]["result"]["stdout_bytes"] == len("hello from http\n")


def test_paging_and_the_state_filter(node):
    ids = [submit(node, {"task": "noop", "priority": p}) for p in (1, 2, 3)]
    for task_id in ids:
        wait_state(node, task_id, "succeeded")
    _, first = node.get("/api/tasks?limit=2")
    _, second = node.get("/api/tasks?limit=2&offset=2")
    assert [t["id"] for t in first["tasks"]] == ids[::-1][:2]  # newest first
    assert second["tasks"][0]["id"] == ids[0]
    assert first["total"] == second["total"] >= 3
    _, queued = node.get("/api/tasks?state=queued")
    assert all(t["state"] == "queued" for t in queued["tasks"])


def test_a_client_chosen_id_makes_a_submit_idempotent_and_cancel_works(node):
    body = {"task": "sleep", "args": [30], "id": "chosen-1"}
    assert submit(node, body) == "chosen-1"
    assert submit(node, body) == "chosen-1"
    status, reply = node.post("/api/tasks/chosen-1/cancel")
    assert status == 200 and reply["state"] == "cancelled"
    wait_state(node, "chosen-1", "cancelled")


def test_events_since_filters_by_time(node):
    _, everything = node.get("/api/events")
    assert everything["events"] and everything["node"] == "solo"
    last = everything["events"][-1]["at"]
    _, later = node.get(f"/api/events?since={last}")
    assert later["events"] == []


def test_metrics_are_prometheus_text(node):
    submit(node, {"task": "noop"})

    def scrape():
        with http_conn(node) as conn:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read().decode()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        return text if "p2pq_submit_rate{" in text else None  # rates need two samples
    text = wait_for(scrape, 10, "rates in /metrics")
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    for name in ("p2pq_queue_depth", "p2pq_tasks", "p2pq_submit_rate", "p2pq_dispatch_rate",
                 "p2pq_elections_started_total", "p2pq_term", "p2pq_is_leader", "p2pq_commit_index",
                 "p2pq_tick_lateness_seconds"):
        assert f"\n{name}{{" in text, name
    assert 'p2pq_is_leader{node="solo"} 1' in text
    late = dict(re.findall(r'p2pq_tick_lateness_seconds\{node="solo",quantile="([^"]+)"\} (\S+)', text))
    assert set(late) == {"0.5", "0.99", "1"} and 0 <= float(late["0.5"]) <= float(late["1"]) < 1.0


def test_tick_lateness_quantiles_cover_the_last_minute():
    from p2pq.net.node import Lateness
    lateness = Lateness()
    assert lateness.quantiles(100.0) == {}
    lateness.add(10.0, 5.0)  # more than a minute before: not counted
    for i in range(100):
        lateness.add(90.0 + i * 0.1, i / 1000)
    lateness.add(99.9, -0.001)  # early (a clock's rounding) counts as on time
    q = lateness.quantiles(100.0)
    assert q["1"] == 0.099 and 0.045 <= q["0.5"] <= 0.055 and q["0.99"] >= 0.098


# -- bad input: a 4xx with one clear line, and the node keeps serving ---------------------------

@pytest.mark.parametrize("path, status, code", [
    ("/api/tasks/no-such-task", 404, "unknown_task"),
    ("/api/tasks/no-such-task/output", 404, "unknown_task"),
    ("/api/tasks?state=bogus", 400, "invalid"),
    ("/api/tasks?limit=x", 400, "invalid"),
    ("/api/tasks?limit=100000", 400, "invalid"),
    ("/api/tasks?offset=-1", 400, "invalid"),
    ("/api/events?since=yesterday", 400, "invalid"),
    ("/api/nothing-here", 404, "not_found"),
])
def test_bad_reads_get_a_4xx_with_a_clear_message(node, path, status, code):
    got, body = node.get(path)
    assert (got, body["ok"], body["error"]) == (status, False, code)
    assert body["message"]


@pytest.mark.parametrize("raw, status, code, says", [
    (b'{"task": "noop"', 400, "malformed_json", "not valid JSON"),
    (b"\xff\xfe", 400, "malformed_json", "not valid JSON"),
    (b'["noop"]', 400, "invalid", "JSON object"),
    (b'{"args": [1]}', 400, "invalid", "missing 'task'"),
    (b'{"task": "noop", "priority": "high"}', 400, "invalid", "priority"),
    (b'{"task": "noop", "colour": "red"}', 400, "invalid", "unknown field"),
    (b'{"task": "noop", "retries": -1}', 400, "invalid", "retries"),
    (b'{"task": "noop", "kind": "rocket"}', 400, "invalid", "unknown task kind"),
    (b'{"task": "nomodule", "kind": "python"}', 400, "invalid", "pkg.module:function"),
    (b'{"task": "noop", "priority": 1180591620717411303424}', 400, "invalid", "priority must be between"),
    (b'{"task": "noop", "retries": 18446744073709551616}', 400, "invalid", "retries"),
    (b'{"task": "noop", "timeout_s": 1e999}', 400, "invalid", "timeout_s"),
    (b'{"task": "noop", "priority": 2.5}', 400, "invalid", "priority"),
    (b'{"task": "noop", "id": "a b"}', 400, "invalid", "task id"),
    (b'{"task": "fibonaci", "args": [3]}', 400, "invalid", "did you mean 'fibonacci'"),
    (b'{"task": "fibonacci"}', 400, "invalid", "missing a required argument"),
    (b'{"task": "echo", "args": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}', 400,
     "invalid", "nests deeper"),
])
def test_bad_submits_get_a_400_that_says_why(node, raw, status, code, says):
    got, body = node.post("/api/tasks", raw=raw)
    assert (got, body["error"]) == (status, code)
    assert says in body["message"]


def test_an_oversized_body_is_refused_with_413(node):
    got, body = node.post("/api/tasks", raw=b'{"task": "' + b"x" * 200_000 + b'"}')
    assert (got, body["error"]) == (413, "too_large") and "limit" in body["message"]


def test_an_oversized_chunked_body_is_refused_with_413(node):
    with http_conn(node) as conn:
        conn.putrequest("POST", "/api/tasks")
        conn.putheader("Authorization", f"Bearer {node.token}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 32_768
        for _ in range(4):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        body = json.loads(response.read())
    assert (response.status, body["error"]) == (413, "too_large")


def test_unknown_task_cancel_is_404_and_wrong_method_is_405(node):
    got, body = node.post("/api/tasks/nope/cancel")
    assert (got, body["error"]) == (404, "unknown_task")
    with http_conn(node) as conn:
        conn.request("DELETE", "/api/overview", headers={"Authorization": f"Bearer {node.token}"})
        response = conn.getresponse()
        body = json.loads(response.read())
    assert response.status == 405 and body["ok"] is False


def test_the_node_survives_all_of_it(node):
    status, body = node.get("/healthz")
    assert status == 200 and body["role"] == "leader"
    assert submit(node, {"task": "noop"})


# -- authority -------------------------------------------------------------------------------------

def test_writes_need_the_token_even_on_loopback(node):
    got, body = node.post("/api/tasks", {"task": "noop"}, token=None)
    assert (got, body["error"]) == (401, "unauthorized") and "Authorization: Bearer" in body["message"]
    got, body = node.post("/api/tasks", {"task": "noop"}, token="not-the-token")
    assert (got, body["error"]) == (401, "unauthorized") and "wrong token" in body["message"]
    got, _ = node.post("/api/tasks/x/cancel", token=None)
    assert got == 401


def test_reads_are_open_on_loopback_but_a_foreign_host_name_is_refused(node):
    assert node.get("/api/overview")[0] == 200
    got, body = node.get("/api/overview", headers={"Host": "attacker.example:80"})
    assert (got, body["error"]) == (403, "bad_host")
    assert node.get("/api/overview", headers={"Host": "localhost"})[0] == 200


def test_when_exposed_reads_need_the_token_too(node):
    access = node.runtime.http.access
    access.local = False  # as if bound to 0.0.0.0; the test's traffic still stays on loopback
    try:
        got, body = node.get("/api/overview")
        assert (got, body["error"]) == (401, "unauthorized")
        assert node.get("/metrics")[0] == 401
        assert node.get("/api/overview", token=node.token)[0] == 200
        with http_conn(node) as conn:  # the page itself holds nothing secret
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
    finally:
        access.local = True


# -- the live stream -------------------------------------------------------------------------------

def test_the_stream_sends_hello_then_snapshots_and_notes(node):
    with http_conn(node) as conn:
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        assert response.getheader("Content-Type") == "text/event-stream"
        kinds = []
        deadline = time.monotonic() + 10
        while len(set(kinds)) < 2 and time.monotonic() < deadline:
            line = response.readline().decode()
            if line.startswith("event: "):
                kinds.append(line[7:].strip())
            elif line.startswith("data: ") and kinds[-1] == "hello":
                hello = json.loads(line[6:])
                assert hello["cluster"]["leader"] == "solo" and "chart" in hello and "events" in hello
    assert kinds[0] == "hello" and "snapshot" in kinds


def test_a_note_reaches_an_open_stream_at_once(node):
    with http_conn(node) as conn:
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        assert response.readline().startswith(b"event: hello")
        node.loop.call_soon_threadsafe(node.runtime._note, "node_joined", {"node": "ghost", "priority": 9})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            line = response.readline().decode()
            if line.startswith("data: ") and '"ghost"' in line:
                note = json.loads(line[6:])
                assert note["text"] == "ghost joined (priority 9)" and note["seen_by"] == "solo"
                return
    pytest.fail("the note did not arrive on the stream")


def http_conn(node):
    class _Conn(http.client.HTTPConnection):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()
    return _Conn("127.0.0.1", node.http_port, timeout=10)


def test_live_views_are_bounded_and_the_node_keeps_serving(node):
    """Issue 13: 200 dashboard streams on a leader; it must never delay the protocol."""
    from p2pq.web.live import Hub
    hub = node.runtime.http.hub
    wait_for(lambda: not hub.queues, 10, "streams of earlier tests to be noticed closed")
    conns = []
    try:
        for _ in range(Hub.MAX_STREAMS):
            conn = http_conn(node).__enter__()
            conn.request("GET", "/api/stream")
            response = conn.getresponse()
            assert response.status == 200
            conns.append((conn, response))
        with http_conn(node) as conn:
            conn.request("GET", "/api/stream")
            response = conn.getresponse()
            body = json.loads(response.read())
        assert (response.status, body["error"]) == (503, "busy") and "live views" in body["message"]
        status, health = node.get("/healthz")
        assert status == 200 and health["role"] == "leader"
    finally:
        for conn, _ in conns:
            conn.close()


def test_requests_beyond_the_in_flight_bound_are_refused_busy(tmp_path):
    from aiohttp.test_utils import make_mocked_request

    from p2pq.web import server
    from p2pq.web.auth import Access

    async def scenario():
        init_cluster(tmp_path / "cluster")
        app = {"access": Access("127.0.0.1", tmp_path / "cluster"), "load": {"in_flight": 0}}
        gate = asyncio.Event()

        async def slow(request):
            await gate.wait()
            return server.web.json_response({"ok": True})

        def request():
            return make_mocked_request("GET", "/api/overview", headers={"Host": "127.0.0.1"}, app=app)
        held = [asyncio.ensure_future(server._guard(request(), slow)) for _ in range(server.MAX_IN_FLIGHT)]
        await asyncio.sleep(0)
        refused = await server._guard(request(), slow)
        gate.set()
        answered = await asyncio.gather(*held)
        again = await server._guard(request(), slow)
        return refused, answered, again, app["load"]["in_flight"]
    refused, answered, again, in_flight = asyncio.run(scenario())
    assert refused.status == 503 and json.loads(refused.text)["error"] == "busy"
    assert {r.status for r in answered} == {200} and again.status == 200 and in_flight == 0
