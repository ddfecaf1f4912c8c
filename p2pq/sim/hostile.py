"""A hostile client: a valid identity that sends well-formed frames with bad contents (G5).

Every request it sends breaks exactly one rule of docs/api.md: a field of
the wrong type, a number out of range (beyond 64 bits, NaN, infinity), an
id that is too long or of the wrong charset, arguments nested too deep, a
list where a map belongs, a peer's message type, a type nobody knows. Each
one must be refused ``invalid`` at the edge; the checker counts a request
that was answered otherwise (``hostile_accepted``) as a failure, and so is
any ``internal_error`` a node reports while the ordinary clients' tasks go
on. The client draws from its own random stream, so adding it leaves every
other stream of a seed (faults, the ordinary clients) as it was.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Callable

from p2pq.core.messages import MESSAGE_TYPES

from .world import World

NAN, INF = float("nan"), float("inf")
_DEEP: Any = [0]
for _ in range(40):
    _DEEP = [_DEEP]

BAD_IDS = [5, None, "x" * 201, "a b", "tâche", [1], {"a": 1}, 1.5, True, b"id", 2**64 - 1]
BAD_INTEGERS = [2**64 - 1, 2**63, -(2**63) - 1, 1.5, INF, NAN, "1", None, True, [], {}]
BAD_FIELDS: dict[str, list[Any]] = {
    "kind": ["", "rust", None, 5, []],
    "target": ["", None, 5, "x" * 5000, "pkg.mod:", "a b", ["echo"]],
    "args": ["notalist", 5, None, [b"bytes"], [NAN], [INF], [_DEEP], [{1: 2}], [[0] * 10] * 1001 * 10],
    "priority": BAD_INTEGERS,
    "retries": [-1, 101, 2**63, 1.5, "x", None, True],
    "timeout_s": [NAN, INF, -1, 0, 10**9, "10", True, []],
    "options": ["x", {"cwd": 5}, {"cwd": ""}, {"env": {"A": 5}}, {"kwargs": [1]}, {"x": NAN}],
}
BAD_PARAMS = ["x", [1], {"limit": "abc"}, {"limit": 0}, {"limit": 10**6}, {"offset": -1},
              {"offset": 2**64 - 1}, {"state": "nope"}, {"id": 5}, {"id": "x" * 300}]


def hostile_request(rng: random.Random, n: int) -> tuple[str, dict]:
    """(what was broken, a request map that breaks it)."""
    choice = rng.randrange(6)
    if choice <= 1:  # most of the surface is in a submit
        spec = {"kind": "builtin", "target": "sleep", "args": [0.01], "priority": 5, "retries": 0,
                "timeout_s": None, "options": {}}
        task_id: Any = f"hostile-{n}"
        if rng.random() < 0.15:
            task_id = rng.choice(BAD_IDS)
            broken = "submit.id"
        else:
            name = rng.choice(sorted(BAD_FIELDS))
            spec[name] = copy.deepcopy(rng.choice(BAD_FIELDS[name]))
            broken = f"submit.{name}"
        tasks: Any = [[task_id, spec]]
        if rng.random() < 0.05:
            tasks, broken = rng.choice([[], "x", [[1]], [[task_id]], {"a": 1}]), "submit.tasks"
        return broken, {"type": "submit", "tasks": tasks}
    if choice == 2:
        kind = rng.choice(["cancel", "wait"])
        return f"{kind}.task_id", {"type": kind, "task_id": rng.choice(BAD_IDS + [""])}
    if choice == 3:
        if rng.random() < 0.3:
            return "query.what", {"type": "query", "what": rng.choice(["", "tasks", 5, None, ["task"]])}
        what = rng.choice(["task", "list"])
        params = copy.deepcopy(rng.choice(BAD_PARAMS if what == "list" else BAD_PARAMS + [{}]))
        return f"query.{what}.params", {"type": "query", "what": what, "params": params}
    if choice == 4:  # a node's message, or a forward, from a client connection
        kind = rng.choice(sorted(MESSAGE_TYPES.keys() - {"submit", "cancel", "query", "wait"}))
        return f"peer type {kind}", {"type": kind, "term": [2**63 - 1, "evil"], "records": [_DEEP],
                                     "request": {"type": "forward", "request": {}}}
    return "unknown type", {"type": rng.choice(["", "hello", "submit2", "x" * 300]), "tasks": []}


class HostileClient:
    """Sends `rate_per_s` hostile requests a second to random nodes, from `start_s` to `stop_s`."""

    def __init__(self, world: World, rate_per_s: float, start_s: float, stop_s: float) -> None:
        self.world, self.rate_per_s = world, rate_per_s
        self.start_s, self.stop_s = start_s, stop_s
        self.rng = random.Random(f"{world.seed}:hostile")
        self.sent = 0

    def start(self) -> None:
        if self.rate_per_s > 0:
            self.world.call_at(self.start_s + self.rng.expovariate(self.rate_per_s), self._arrival)

    def _arrival(self) -> None:
        world = self.world
        if world.now >= self.stop_s:
            return
        self.sent += 1
        broken, wire = hostile_request(self.rng, self.sent)
        via = self.rng.choice(world.ids)
        if world.request_wire(via, wire, self._on_reply(broken)):
            world.history.hostile_sent += 1
        world.call_at(world.now + self.rng.expovariate(self.rate_per_s), self._arrival)

    def _on_reply(self, broken: str) -> Callable[[dict], None]:
        def on_reply(body: dict) -> None:
            if body.get("error") != "invalid":
                self.world.history.hostile_accepted.append(
                    (self.world.now, broken, body.get("error") or "ok"))
        return on_reply
