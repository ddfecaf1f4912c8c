"""What a node holds only while it leads: one object, made when it wins, dropped when it steps down.

A node that wins an election (bully step 4) makes a ``Leadership`` for its
new term and keeps it through gathering and leading; stepping down drops
it whole, so nothing of one leadership (a log position, a follower's
progress, a lease, an offer's parts, a client waiting) can leak into the
next, as raft's ``reset()`` does for its leader. While it gathers it also
holds a ``Gather``: whom it waits for, and until when.

The objects here hold state and answer questions about it; they send
nothing. The rules that act on them (``replication.py``, ``scheduler.py``,
``election.py``) say what to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import NodeId, Term

TASK_TIME_WEIGHT = 0.25  # of the newest sample in a node's moving average of its task time
TASK_TIME_CAP_S = 1.0     # a longer gap between results counts as this (a node back from idle)


@dataclass(slots=True)
class FollowerProgress:
    sent: int = -1
    acked: int = -1
    snapshot_index: int = 0
    needs_snapshot: bool = True
    sent_at: float = 0.0
    fresh_at: float = float("-inf")  # newest send time of an append it acknowledged
    chosen_at: float = float("-inf")  # when it became a follower (its offer is awaited a while)
    snapshot_parts: int = 0           # parts of the last snapshot sent while unacknowledged
    snapshot_based_on: int = 0        # the offer id the last snapshot trusted (0: a whole one)


@dataclass(slots=True)
class PendingAck:
    """Something to do once the log holds `index` on enough nodes."""

    index: int
    kind: str              # "reply" or "finished"
    target: Any            # (origin node, request id) or (node, attempt id)
    body: dict | None = None


@dataclass(slots=True)
class Gather:
    """A new leader's wait for the others' state (bully step 4)."""

    expected: set[NodeId]  # the nodes alive when it won: it waits for each one's offer
    deadline: float        # or until then (in quorum mode, for a majority's)


@dataclass(slots=True)
class Leadership:
    """One term's leadership, from the win to the step down."""

    term: Term
    gather: Gather | None
    # the log (replication.py): task ids in the order they changed, from log_base on
    log: list[str] = field(default_factory=list)
    log_base: int = 0
    commit: int = 0
    followers: dict[NodeId, FollowerProgress] = field(default_factory=dict)
    pending: list[PendingAck] = field(default_factory=list)     # acks waiting on the commit index
    waiters: dict[str, list[tuple[NodeId, int]]] = field(default_factory=dict)  # clients waiting on tasks
    watches: dict[tuple[NodeId, int], set[str]] = field(default_factory=dict)  # a watch: the tasks it awaits
    serve_from: float = float("-inf")  # quorum mode: an older leader's lease may last until then
    # the others' state (election.py): who offered theirs, offers still coming in parts,
    # and each node's last offer (its id and table digests), which its snapshot may trust
    offers_from: set[NodeId] = field(default_factory=set)
    offer_parts: dict[NodeId, tuple] = field(default_factory=dict)
    peer_offers: dict[NodeId, tuple[int, bytes]] = field(default_factory=dict)
    # leases (scheduler.py): node -> attempt id -> (task id, since), and how long tasks take
    assigned: dict[NodeId, dict[str, tuple[str, float]]] = field(default_factory=dict)
    task_time_s: dict[NodeId, float] = field(default_factory=dict)
    last_result_at: dict[NodeId, float] = field(default_factory=dict)

    @property
    def last_index(self) -> int:
        return self.log_base + len(self.log)

    def await_commit(self, kind: str, target: Any, body: dict | None = None) -> None:
        """Do `kind` once everything logged so far is committed."""
        self.pending.append(PendingAck(self.last_index, kind, target, body))

    def take_committed(self) -> list[PendingAck]:
        """The pending acks the commit index now covers, in the order they were made."""
        if not self.pending or self.pending[0].index > self.commit:
            return []
        ready = [p for p in self.pending if p.index <= self.commit]
        self.pending = [p for p in self.pending if p.index > self.commit]
        return ready

    def trim_log(self) -> None:
        """Drop log entries every follower has; a laggard gets a snapshot."""
        if not self.followers:
            keep_from = self.last_index
        else:
            keep_from = max(0, min(p.acked for p in self.followers.values()))
        drop = keep_from - self.log_base
        if drop > 1024:
            del self.log[:drop]
            self.log_base = keep_from

    # -- leases ---------------------------------------------------------------------
    def lease(self, node: NodeId, attempt_id: str, task_id: str, since: float) -> None:
        self.assigned.setdefault(node, {})[attempt_id] = (task_id, since)

    def unassign(self, node: NodeId, attempt_id: str) -> tuple[str, float] | None:
        """Drop a lease; returns it, (task id, dispatched at), if there was one."""
        return self.assigned.get(node, {}).pop(attempt_id, None)

    def holding(self, node: NodeId) -> int:
        return len(self.assigned.get(node, ()))

    def time_result(self, node: NodeId, slots: int, now: float) -> None:
        """A result from `node`: update the moving average of how long its tasks take."""
        last = self.last_result_at.get(node)
        self.last_result_at[node] = now
        if last is None:
            return
        sample = min(now - last, TASK_TIME_CAP_S) * max(1, slots)
        old = self.task_time_s.get(node)
        self.task_time_s[node] = sample if old is None else old + TASK_TIME_WEIGHT * (sample - old)

    def forget_node(self, node: NodeId) -> None:
        """A peer dead long enough to be forgotten: no lease, timing or offer of it is kept."""
        for per_node in (self.assigned, self.task_time_s, self.last_result_at, self.offer_parts):
            per_node.pop(node, None)
        if self.gather is not None:
            self.gather.expected.discard(node)
