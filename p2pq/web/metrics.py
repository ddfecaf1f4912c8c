"""/metrics in the Prometheus text format (version 0.0.4).

Numbers come from the sampler's latest snapshot (the cluster's queue as the
leader last reported it, and rates) and, read at scrape time, from this
node's core (its term, role, peers and, on the leader, replication progress). Every node serves its own view; labels
say which node is speaking.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class Exposition:
    """Collects metric families and renders them; a family is HELP, TYPE, then its samples."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict, float | None]]) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        if not rows:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            self.lines.append(f"{name}{_labels({'node': self.node, **labels})} {_number(value)}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(runtime: Any, sampler: Any, snapshot: dict) -> str:
    """The whole /metrics page."""
    core, out = runtime.core, Exposition(runtime.node_id)
    term_number = core.term.number
    out.add("p2pq_term", "gauge", "Number of the term this node obeys (or leads).", [({}, term_number)])
    out.add("p2pq_is_leader", "gauge", "1 if this node leads.", [({}, core.role.value == "leader")])
    out.add("p2pq_leader_reachable", "gauge", "1 if the leader answered the last sample.",
            [({}, snapshot["leader_reachable"])])
    out.add("p2pq_elections_started_total", "counter", "Elections this node started.",
            [({}, sampler.elections_started)])
    out.add("p2pq_leader_changes_total", "counter", "Leaderships this node won or accepted.",
            [({}, sampler.leader_changes)])
    members = core.view()["members"]  # local facts are read now, not from the last sample
    out.add("p2pq_peers", "gauge", "Nodes this node knows, by liveness.",
            [({"alive": "true"}, sum(m["alive"] for m in members)),
             ({"alive": "false"}, sum(not m["alive"] for m in members))])
    lateness = getattr(runtime, "tick_lateness", None)
    if lateness is not None:
        out.add("p2pq_tick_lateness_seconds", "gauge",
                "How late the heartbeat tick reached the protocol over the last minute (quantiles).",
                [({"quantile": q}, v) for q, v in lateness.quantiles(time.monotonic()).items()])
    _queue(out, snapshot.get("queue"))
    _rates(out, snapshot["rates"], sampler)
    _replication(out, sampler.replication())
    return out.render()


def _queue(out: Exposition, queue: dict | None) -> None:
    if queue is None:
        return
    out.add("p2pq_queue_depth", "gauge", "Tasks waiting to run.", [({}, queue["depth"])])
    out.add("p2pq_tasks", "gauge", "Tasks by state, as the leader last reported them.",
            [({"state": s}, n) for s, n in queue["counts"].items()])
    out.add("p2pq_queued_tasks", "gauge", "Queued tasks by priority (1 is most urgent).",
            [({"priority": p}, n) for p, n in queue["by_priority"].items()])


def _rates(out: Exposition, rates: dict, sampler: Any) -> None:
    history = sampler.history[-1] if sampler.history else None
    if history is not None:
        out.add("p2pq_tasks_submitted_total", "counter", "Tasks the cluster holds (every submit, ever).",
                [({}, history["submitted"])])
        out.add("p2pq_tasks_finished_total", "counter", "Tasks in a terminal state.",
                [({}, history["finished"])])
        out.add("p2pq_attempts_started_total", "counter",
                "Attempts in this node's copy of the table (exact on the leader and followers).",
                [({}, history["dispatched"])])
    for name, key, what in (("submit", "submitted_per_s", "Tasks submitted"),
                            ("dispatch", "dispatched_per_s", "Attempts started"),
                            ("finish", "finished_per_s", "Tasks finished")):
        out.add(f"p2pq_{name}_rate", "gauge", f"{what} per second over the last 5 s.",
                [({}, rates.get(key))])


def _replication(out: Exposition, replication: dict) -> None:
    out.add("p2pq_last_index", "gauge", "The leader's last log index.", [({}, replication["last_index"])])
    out.add("p2pq_commit_index", "gauge", "The highest index held by every follower.",
            [({}, replication["commit"])])
    out.add("p2pq_replication_lag", "gauge",
            "On the leader: log entries the slowest follower has not acknowledged.",
            [({}, replication["lag"])])
