"""Live data for the dashboard: the sampler that takes a snapshot every second, and the hub
that pushes snapshots and notes to every open event stream (server-sent events).

Why a sampler: each open page (and /metrics) would otherwise ask the leader
the same questions; one snapshot per second per node is shared by all, and
its history gives the throughput chart and the rates.

Why the snapshot survives a failover: the view of the cluster is this
node's own (always there), and the queue comes from the leader through
``runtime.request`` (forwarded when this node does not lead). While there
is no leader the snapshot says so and keeps the last known queue.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

from p2pq.core.errors import ErrorCode, error
from p2pq.core.messages import Query

from . import model

log = logging.getLogger("p2pq.web")

LOAD_SCAN_LIMIT = 1000      # running tasks fetched to count each node's load
PRIORITY_SCAN_LIMIT = 1000  # queued tasks fetched (on a non-leader) to count priorities
HISTORY_POINTS = 240        # samples kept: 4 minutes at one per second
RATE_WINDOW_S = 5.0
REQUEST_TIMEOUT_S = 3.0


async def ask(runtime: Any, message: Any, timeout_s: float = REQUEST_TIMEOUT_S) -> dict:
    """runtime.request with a deadline: a forward lost with its leader must not hang a page."""
    try:
        return await asyncio.wait_for(runtime.request(message), timeout_s)
    except asyncio.TimeoutError:
        return error(ErrorCode.TIMEOUT, f"no answer within {timeout_s:g} s")


class Hub:
    """Fans events out to the open streams; a stream that cannot keep up is dropped.

    An event is encoded once, whatever the number of streams, and the
    streams are bounded (MAX_STREAMS): the node's event loop also carries
    the protocol, and its heartbeats must not wait for dashboards.
    """

    QUEUE_SIZE = 256
    MAX_STREAMS = 32

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue] = set()

    @property
    def full(self) -> bool:
        return len(self.queues) >= self.MAX_STREAMS

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self.QUEUE_SIZE)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.queues.discard(queue)

    def publish(self, kind: str, data: dict) -> None:
        if not self.queues:
            return
        event = encode_event(kind, data)
        for queue in list(self.queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(queue)

    def close(self) -> None:
        """End every stream (None is the end marker)."""
        for queue in list(self.queues):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
        self.queues.discard(queue)


def encode_event(kind: str, data: dict) -> bytes:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


class Sampler:
    """Samples the node once per `interval_s`; owns the history behind rates and the chart."""

    def __init__(self, runtime: Any, hub: Hub, interval_s: float = 1.0) -> None:
        self.runtime, self.hub, self.interval_s = runtime, hub, interval_s
        self.latest: dict | None = None
        self.queue: dict | None = None          # the last queue the leader told us about
        self.history: collections.deque = collections.deque(maxlen=HISTORY_POINTS)
        self.elections_started = self.leader_changes = 0
        # Events inferred from successive views: a member that simply starts obeying
        # a new leader never notes that the old one died, but its view shows it.
        self.inferred: collections.deque = collections.deque(maxlen=200)
        self._last_view: dict | None = None
        for note in list(runtime.notes):
            self.count(note)

    def count(self, note: dict) -> None:
        """Keep the election counters (called for every note)."""
        if note.get("kind") == "election_started":
            self.elections_started += 1
        elif note.get("kind") in ("leader_elected", "leader_accepted"):
            self.leader_changes += 1

    async def run(self) -> None:
        """Sample until cancelled; a failed sample is logged, never fatal."""
        while True:
            try:
                self.hub.publish("snapshot", await self.sample())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dashboard sample failed")
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> dict:
        """Take a snapshot now and remember it."""
        core, now = self.runtime.core, time.time()
        stats = await ask(self.runtime, Query("stats"))
        running = await ask(self.runtime, Query("list", {"state": "running", "limit": LOAD_SCAN_LIMIT}))
        leader_ok = bool(stats.get("ok"))
        if leader_ok:
            self.queue = await self._queue(stats)
        load = model.load_by_node(running["tasks"]) if running.get("ok") else None
        view = core.view()
        self._remember(now, stats if leader_ok else None, view)
        self._infer(view, time.time())
        self.latest = {
            "at": now, "node": self.runtime.node_id,
            "cluster": model.json_safe(model.cluster_view(view, load)),
            "leader_reachable": leader_ok,
            "leader_error": None if leader_ok else stats.get("message"),
            "queue": self.queue, "rates": self.rates(), "point": self.point(),
            "replication": self.replication(),
        }
        return self.latest

    def _infer(self, view: dict, now: float) -> None:
        """Publish what changed in the view and no note of this node has said."""
        for event in model.diff_views(self._last_view, view, now):
            if model.is_news(event, self.runtime.notes):
                self.inferred.append(event)
                self.hub.publish("note", model.event_view(event, self.runtime.node_id))
        self._last_view = view

    async def _queue(self, stats: dict) -> dict:
        counts = {s: int(stats["counts"].get(s, 0)) for s in model.STATES}
        priorities, exact = await self._by_priority(counts["queued"])
        return {"counts": counts, "total": int(stats["tasks"]), "depth": counts["queued"],
                "by_priority": priorities, "by_priority_exact": exact, "leader": stats.get("node"),
                "term": stats.get("term")}

    async def _by_priority(self, queued: int) -> tuple[dict, bool]:
        """Queued tasks by priority: exact from the table when we lead, else from the leader's list."""
        core = self.runtime.core
        if core.role.value == "leader":
            tasks = ({"priority": r.spec.priority} for r in core.table.values() if r.state.value == "queued")
            return model.by_priority(tasks), True
        if queued == 0:
            return {}, True
        reply = await ask(self.runtime, Query("list", {"state": "queued", "limit": PRIORITY_SCAN_LIMIT}))
        if not reply.get("ok"):
            return (self.queue or {}).get("by_priority", {}), False
        return model.by_priority(reply["tasks"]), reply["total"] <= PRIORITY_SCAN_LIMIT

    def _remember(self, now: float, stats: dict | None, view: dict) -> None:
        """Append one history sample; counters stay at their last value while no leader answers.

        A sample's epoch is (the leader's term, whether this node holds a full
        replica): rates are taken within one epoch only, because a new leader's
        merged table or a snapshot arriving at a new follower is a jump, not work done.
        """
        last = self.history[-1] if self.history else None
        if stats is not None:
            finished = sum(int(stats["counts"].get(s, 0)) for s in model.TERMINAL)
            submitted, term = int(stats["tasks"]), stats.get("term")
        elif last is not None:
            submitted, finished, term = last["submitted"], last["finished"], last["epoch"][0]
        else:
            submitted, finished, term = 0, 0, None
        holder = self.runtime.node_id == view["leader"] or self.runtime.node_id in view["followers"]
        self.history.append({"at": now, "submitted": submitted, "finished": finished,
                             "dispatched": self.attempts_started(), "epoch": (term, holder)})

    def attempts_started(self) -> int:
        """Attempts in this node's copy of the table: exact on the leader and its followers."""
        return sum(len(r.attempts) for r in self.runtime.core.table.values())

    def rates(self) -> dict:
        """Per-second rates over the last few seconds (None until two samples exist)."""
        return self._rates_of(list(self.history))

    @staticmethod
    def _rates_of(samples: list[dict]) -> dict:
        epoch = samples[-1]["epoch"] if samples else None
        same = [s for s in samples if s["epoch"] == epoch]
        return {f"{name}_per_s": model.rate([(s["at"], s[name]) for s in same], RATE_WINDOW_S)
                for name in ("submitted", "finished", "dispatched")}

    def point(self) -> list:
        """One chart point: [time, submitted/s, finished/s]."""
        rates = self.rates()
        return [time.time(), rates["submitted_per_s"] or 0.0, rates["finished_per_s"] or 0.0]

    def replication(self) -> dict:
        """On the leader: last log index, commit, and how far the slowest follower lags (else None)."""
        core = self.runtime.core
        if core.role.value != "leader":
            return {"last_index": None, "commit": None, "lag": None}
        acked = [f.acked for f in core.followers.values()]
        lag = max(0, core.last_index - min(acked)) if acked else None
        return {"last_index": core.last_index, "commit": core.commit, "lag": lag}

    def chart(self) -> list[list]:
        """The throughput history as chart points [time, submitted/s, finished/s]."""
        samples, points = list(self.history), []
        for i in range(1, len(samples)):
            rates = self._rates_of(samples[max(0, i - 10):i + 1])
            points.append([samples[i]["at"], rates["submitted_per_s"] or 0.0, rates["finished_per_s"] or 0.0])
        return points
