"""Pure helpers that shape what the HTTP API, the dashboard and `p2pq top` show.

No I/O here: the server and `p2pq top` fetch data their own way (the node's
core, or a client connection) and both pass it through these functions, so
the browser and the terminal say the same thing in the same words.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable

STATES = ("blocked", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
VALUE_PREVIEW_CHARS = 200

# One line per note kind; a note is {"at", "node", "kind", ...detail} (see NodeRuntime._note).
_EVENT_TEXT = {
    "leader_elected": "{node} won the election and leads term {term}",
    "leader_accepted": "{node} follows leader {leader} (term {term})",
    "stepped_down": "{node} stepped down as leader ({reason})",
    "election_started": "{node} started an election ({reason})",
    "coordinator": "{node} announced itself leader of term {term}",
    "node_dead": "{node} is down ({why})",
    "node_alive": "{node} is back",
    "node_joined": "{node} joined (priority {priority})",
    "task_requeued": "task {task} went back to the queue ({node} lost it)",
    "leader_seen": "leader is now {leader} (term {term})",
}
# Kinds that change who leads or who is up: the dashboard and top highlight them.
FAILOVER_KINDS = frozenset({"leader_elected", "leader_accepted", "stepped_down", "election_started",
                            "node_dead", "coordinator", "leader_seen"})


def event_text(note: dict) -> str:
    """One human line for a note; unknown kinds fall back to their fields."""
    template = _EVENT_TEXT.get(note.get("kind", ""))
    if template is not None:
        try:
            return template.format_map(_Blank(note))
        except (ValueError, IndexError):
            pass
    detail = {k: v for k, v in note.items() if k not in ("at", "kind", "seen_by", "text")}
    return f"{note.get('kind', 'event')} {json.dumps(detail, default=str)}"


class _Blank(dict):
    """format_map helper: a missing field prints as '?' instead of raising."""

    def __missing__(self, key: str) -> str:
        return "?"


def event_view(note: dict, seen_by: str) -> dict:
    """A note as the API serves it: the note, who saw it, one line of text, failover or not."""
    return {**note, "seen_by": seen_by, "text": event_text(note),
            "failover": note.get("kind") in FAILOVER_KINDS}


def brief_task(task: dict) -> dict:
    """A task for lists: the attempts without their output, the value cut short."""
    result = task.get("result")
    return {**task, "attempts": [{**a, "result": _brief_result(a.get("result"))} for a in task["attempts"]],
            "result": _brief_result(result)}


def _brief_result(result: dict | None) -> dict | None:
    if not result:
        return result
    out = {k: v for k, v in result.items() if k not in ("stdout", "stderr", "value", "value_json")}
    value = result.get("value_json") or json.dumps(result.get("value"), default=str)
    out["value_preview"] = value if len(value) <= VALUE_PREVIEW_CHARS else value[:VALUE_PREVIEW_CHARS] + "…"
    out["stdout_bytes"] = len(result.get("stdout") or "")
    out["stderr_bytes"] = len(result.get("stderr") or "")
    return out


def output_tail(task: dict, attempt_id: str | None, tail_chars: int) -> dict | None:
    """The last `tail_chars` of an attempt's stdout and stderr (default: the deciding attempt).

    Returns None when the task has no such attempt.
    """
    attempts = task["attempts"]
    if attempt_id is not None:
        chosen = next((a for a in attempts if a["id"] == attempt_id), None)
    else:
        ended = [a for a in attempts if a["result"] is not None]
        chosen = next((a for a in ended if a["outcome"] == "succeeded"), ended[-1] if ended else None)
        chosen = chosen or (attempts[-1] if attempts else None)
    if chosen is None:
        return None
    result = chosen.get("result") or {}
    out = {"id": task["id"], "attempt": chosen["id"], "node": chosen["node"],
           "outcome": chosen["outcome"], "finished": chosen["ended_at"] is not None}
    for stream in ("stdout", "stderr"):
        text = result.get(stream) or ""
        out[stream] = text[-tail_chars:] if tail_chars else ""
        out[f"{stream}_truncated"] = len(text) > tail_chars
    return out


def load_by_node(running_tasks: Iterable[dict]) -> dict[str, int]:
    """How many tasks each node is running, from the leader's list of running tasks."""
    load: Counter[str] = Counter()
    for task in running_tasks:
        for attempt in task["attempts"]:
            if attempt["ended_at"] is None:
                load[attempt["node"]] += 1
    return dict(load)


def by_priority(tasks: Iterable[dict]) -> dict[str, int]:
    """Queued tasks counted by priority (keys are strings: JSON object keys)."""
    counts = Counter(str(t["priority"]) for t in tasks)
    return {k: counts[k] for k in sorted(counts, key=int)}


def cluster_view(view: dict, load: dict[str, int] | None) -> dict:
    """The node's view of the cluster with each member's load (None when unknown)."""
    members = []
    for m in view["members"]:
        running = load.get(m["node"], 0) if load is not None else m.get("running")
        members.append({**m, "address": list(m["address"]) if m.get("address") else None,
                        "running": running})
    members.sort(key=lambda m: (-m["priority"], m["node"]))
    return {**{k: v for k, v in view.items() if k not in ("ok", "type", "req")}, "members": members}


def diff_views(old: dict | None, new: dict, at: float) -> list[dict]:
    """Events a watcher can infer from two views of the cluster (used where notes are not reachable)."""
    if old is None:
        return []
    events = []
    if (old.get("leader"), old.get("term")) != (new.get("leader"), new.get("term")) and new.get("leader"):
        events.append({"at": at, "kind": "leader_seen", "node": new["node"],
                       "leader": new["leader"], "term": new["term"]})
    was_alive = {m["node"]: m["alive"] for m in old.get("members", ())}
    for m in new.get("members", ()):
        before = was_alive.get(m["node"])
        if before is None:
            events.append({"at": at, "kind": "node_joined", "node": m["node"], "priority": m["priority"]})
        elif before and not m["alive"]:
            events.append({"at": at, "kind": "node_dead", "node": m["node"], "why": "seen in this node's view"})
        elif not before and m["alive"]:
            events.append({"at": at, "kind": "node_alive", "node": m["node"]})
    return events


def is_news(event: dict, notes: Iterable[dict], window_s: float = 5.0) -> bool:
    """False when the node's own notes already told this inferred event (same kind, node, term)."""
    for note in notes:
        if abs(note.get("at", 0.0) - event["at"]) > window_s:
            continue
        if event["kind"] == "leader_seen":
            if note.get("kind") in ("leader_elected", "leader_accepted", "coordinator") \
                    and note.get("term") == event["term"]:
                return False
        elif note.get("kind") == event["kind"] and note.get("node") == event["node"]:
            return False
    return True


def rate(samples: list[tuple[float, float]], window_s: float) -> float | None:
    """Per-second increase of a counter over the last `window_s` of (time, value) samples.

    A counter that went down (a new leader counting from a merged table)
    reads as 0, never negative.
    """
    if len(samples) < 2:
        return None
    t1, v1 = samples[-1]
    t0, v0 = next(((t, v) for t, v in samples[:-1] if t1 - t <= window_s), samples[-2])
    if t1 <= t0:
        return None
    return max(0.0, (v1 - v0) / (t1 - t0))


def json_safe(value: Any) -> Any:
    """Round-trip through JSON (tuples to lists, odd objects to strings)."""
    return json.loads(json.dumps(value, default=str))
