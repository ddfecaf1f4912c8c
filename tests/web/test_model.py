"""The pure pieces of the web layer: event lines, trimmed tasks, loads, rates, the access rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pq.web import model
from p2pq.web.auth import Access, Denied, host_of, is_loopback


def task(task_id="t1", state="succeeded", priority=5, attempts=()):
    return {"id": task_id, "state": state, "priority": priority, "attempts": list(attempts),
            "result": attempts[-1]["result"] if attempts else None}


def attempt(attempt_id, node, outcome="succeeded", ended=2.0, result=None):
    return {"id": attempt_id, "node": node, "started_at": 1.0, "ended_at": ended,
            "outcome": outcome, "result": result}


@pytest.mark.parametrize("note, text", [
    ({"kind": "leader_elected", "node": "n3", "term": "2@n3"}, "n3 won the election and leads term 2@n3"),
    ({"kind": "node_dead", "node": "n3", "why": "stopped answering"}, "n3 is down (stopped answering)"),
    ({"kind": "leader_accepted", "node": "n1", "leader": "n2", "term": "2@n2"}, "n1 follows leader n2 (term 2@n2)"),
    ({"kind": "task_requeued", "task": "ab", "node": "n2"}, "task ab went back to the queue (n2 lost it)"),
    ({"kind": "node_dead", "node": "n3"}, "n3 is down (?)"),  # a missing field does not raise
])
def test_event_text_says_what_happened(note, text):
    assert model.event_text(note) == text


def test_an_unknown_note_kind_still_gets_a_line():
    assert model.event_text({"at": 1.0, "kind": "weather", "sky": "blue"}) == 'weather {"sky": "blue"}'


def test_event_view_marks_failover_kinds():
    assert model.event_view({"kind": "node_dead", "node": "x"}, "me")["failover"] is True
    assert model.event_view({"kind": "node_joined", "node": "x"}, "me")["failover"] is False


def test_brief_task_drops_output_and_cuts_long_values():
    result = {"status": "succeeded", "value": "v" * 1000, "stdout": "out" * 10, "stderr": ""}
    brief = model.brief_task(task(attempts=[attempt("a1", "n1", result=result)]))
    assert "stdout" not in brief["result"] and brief["result"]["stdout_bytes"] == 30
    assert len(brief["result"]["value_preview"]) == model.VALUE_PREVIEW_CHARS + 1
    assert "stdout" not in brief["attempts"][0]["result"]


def test_output_tail_prefers_the_deciding_attempt_and_cuts_to_the_tail():
    lost = attempt("a1", "n1", outcome="lost", result=None)
    won = attempt("a2", "n2", result={"stdout": "0123456789", "stderr": "e"})
    out = model.output_tail(task(attempts=[lost, won]), None, 4)
    assert (out["attempt"], out["stdout"], out["stdout_truncated"]) == ("a2", "6789", True)
    assert (out["stderr"], out["stderr_truncated"]) == ("e", False)
    assert model.output_tail(task(attempts=[lost, won]), "a1", 4)["stdout"] == ""
    assert model.output_tail(task(attempts=[lost]), "zz", 4) is None
    assert model.output_tail(task(attempts=[]), None, 4) is None


def test_load_counts_only_running_attempts_per_node():
    running = [task(attempts=[attempt("a1", "n1", outcome="lost"), attempt("a2", "n2", outcome=None, ended=None)]),
               task(attempts=[attempt("a3", "n2", outcome=None, ended=None)])]
    assert model.load_by_node(running) == {"n2": 2}


def test_by_priority_is_sorted_numerically():
    assert list(model.by_priority([task(priority=p) for p in (10, 2, 2, 1)]).items()) == \
        [("1", 1), ("2", 2), ("10", 1)]


def view(leader, term, alive):
    return {"node": "n1", "leader": leader, "term": term, "followers": [],
            "members": [{"node": n, "alive": a, "priority": i} for i, (n, a) in enumerate(alive.items())]}


def test_diff_views_sees_a_failover():
    before = view("n3", "1@n3", {"n1": True, "n2": True, "n3": True})
    after = view("n2", "2@n2", {"n1": True, "n2": True, "n3": False})
    kinds = [(e["kind"], e.get("leader") or e["node"]) for e in model.diff_views(before, after, 5.0)]
    assert kinds == [("leader_seen", "n2"), ("node_dead", "n3")]
    assert model.diff_views(None, after, 5.0) == []
    assert model.diff_views(after, after, 6.0) == []


def test_an_inferred_event_is_news_only_if_no_note_said_it():
    dead = {"at": 10.0, "kind": "node_dead", "node": "n3"}
    assert model.is_news(dead, [{"at": 9.5, "kind": "node_dead", "node": "n2"}])
    assert not model.is_news(dead, [{"at": 9.5, "kind": "node_dead", "node": "n3"}])
    assert model.is_news(dead, [{"at": 1.0, "kind": "node_dead", "node": "n3"}])  # an old death
    seen = {"at": 10.0, "kind": "leader_seen", "node": "n1", "leader": "n2", "term": "2@n2"}
    assert not model.is_news(seen, [{"at": 9.8, "kind": "leader_accepted", "node": "n1", "term": "2@n2"}])


def test_rate_over_a_window_never_goes_negative():
    assert model.rate([(0.0, 0)], 5) is None
    assert model.rate([(0.0, 0), (1.0, 10), (2.0, 30)], 5) == 15.0
    assert model.rate([(0.0, 0), (10.0, 100), (11.0, 110)], 5) == 10.0  # only the last 5 s
    assert model.rate([(0.0, 50), (1.0, 10)], 5) == 0.0


# -- the access rule ------------------------------------------------------------------------

@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                         ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                         ("10.0.0.5", False), ("lab01", False), ("", False)])
def test_is_loopback(host, local):
    assert is_loopback(host) is local


@pytest.mark.parametrize("header, host", [("127.0.0.1:8080", "127.0.0.1"), ("[::1]:80", "::1"),
                                          ("localhost", "localhost"), ("::1", "::1")])
def test_host_of(header, host):
    assert host_of(header) == host


@pytest.fixture
def cluster_dir(tmp_path) -> Path:
    (tmp_path / "token").write_text("s3cret\n")
    return tmp_path


def refusal(access, *args):
    try:
        access.check(*args)
    except Denied as exc:
        return exc.status, exc.code
    return None


def test_loopback_server_reads_open_writes_need_the_token(cluster_dir):
    access = Access("127.0.0.1", cluster_dir)
    assert refusal(access, "GET", "/api/tasks", "127.0.0.1:8080", "") is None
    assert refusal(access, "POST", "/api/tasks", "127.0.0.1:8080", "") == (401, "unauthorized")
    assert refusal(access, "POST", "/api/tasks", "127.0.0.1:8080", "Bearer nope") == (401, "unauthorized")
    assert refusal(access, "POST", "/api/tasks", "localhost:8080", "Bearer s3cret") is None
    assert refusal(access, "GET", "/api/tasks", "evil.example", "") == (403, "bad_host")


def test_exposed_server_guards_reads_but_not_the_page(cluster_dir):
    access = Access("0.0.0.0", cluster_dir)
    assert refusal(access, "GET", "/api/tasks", "lab01:8080", "") == (401, "unauthorized")
    assert refusal(access, "GET", "/metrics", "lab01:8080", "") == (401, "unauthorized")
    assert refusal(access, "GET", "/metrics", "lab01:8080", "bearer s3cret") is None
    assert refusal(access, "GET", "/", "lab01:8080", "") is None
    assert refusal(access, "GET", "/static/app.js", "lab01:8080", "") is None


def test_without_a_token_file_writes_are_refused_with_a_hint(tmp_path):
    access = Access("127.0.0.1", tmp_path)
    with pytest.raises(Denied, match="p2pq init"):
        access.check("POST", "/api/tasks", "127.0.0.1", "Bearer anything")


# -- p2pq top's drawing ------------------------------------------------------------------------

def test_top_draws_a_snapshot_without_a_cluster():
    from rich.console import Console
    from p2pq.web.top import render, sparkline
    assert sparkline([0, 1, 2, 4]) == "▁▂▄█" and sparkline([]) == ""
    snap = {"node": "n1", "leader_reachable": False, "leader_error": "no leader yet",
            "cluster": {"leader": None, "term": "3@n3", "role": "electing", "members": [
                {"node": "n3", "role": "leader", "alive": False, "priority": 3, "slots": 2, "running": None,
                 "address": ["10.0.0.3", 7470]},
                {"node": "n1", "role": "member", "alive": True, "self": True, "priority": 1, "slots": 2,
                 "running": 1, "address": None}]},
            "queue": None, "rates": {}, "chart": [], "tasks": [],
            "events": [model.event_view({"at": 0.0, "kind": "node_dead", "node": "n3", "why": "left"}, "n1")]}
    console = Console(width=140, record=True)
    console.print(render(snap, "test"))
    text = console.export_text()
    assert "none (election in progress)" in text and "leader not reachable: no leader yet" in text
    assert "dead" in text and "n1 *" in text and "n3 is down (left)" in text
    narrow = Console(width=80, record=True)  # a terminal of 80 columns: one panel above the other
    narrow.print(render(snap, "test", width=80))
    text = narrow.export_text()
    assert max(map(len, text.splitlines())) <= 80 and "10.0.0.3:7470" in text and "n3 is down (left)" in text
    assert text.index("nodes") < text.index("queue") < text.index("newest tasks") < text.index("events")
