"""What clients, executors and the network saw, recorded as it happened.

The checker judges a run only by this history and by the final state of the
cluster, never by the protocol's own bookkeeping, the way Jepsen's
total-queue checker judges a queue by what its clients saw. Two records come
from the world rather than from clients, because no client can see them:
the moment a leader *issues* an acknowledgment (to tell whether two leaders
acknowledge at once, G3) and the intervals in which each node held the
LEADER role (split-brain time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ClientOp:
    task_id: str
    priority: int
    invoked_at: float
    client: str = ""
    acked_at: float | None = None
    ack_term: str | None = None
    replicated: bool | None = None
    gave_up_at: float | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Execution:
    task_id: str
    attempt_id: str
    node: str
    started_at: float
    dispatched_at: float  # the leader's decision, which is what priority order is about
    ended_at: float | None = None
    outcome: str | None = None


@dataclass(slots=True)
class Leadership:
    """One node holding the LEADER role under one term, from `start_s` to `end_s`."""

    node: str
    term: str
    start_s: float
    end_s: float | None = None


@dataclass(slots=True)
class FaultWindow:
    """A fault in force from `start_s` to `end_s` (None: until the final heal)."""

    kind: str
    start_s: float
    end_s: float | None = None
    detail: str = ""


@dataclass(slots=True)
class History:
    ops: dict[str, ClientOp] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    notes: list[tuple[float, str, str, dict]] = field(default_factory=list)
    faults: list[tuple[float, str, Any]] = field(default_factory=list)
    refusals: list[tuple[float, str]] = field(default_factory=list)
    acks_issued: list[tuple[float, str, str]] = field(default_factory=list)  # (at, leader, term)
    leaderships: list[Leadership] = field(default_factory=list)
    windows: list[FaultWindow] = field(default_factory=list)
    leader_losses: list[tuple[float, str, str]] = field(default_factory=list)  # (at, leader, its term)
    first_dispatch: dict[str, tuple[float, str]] = field(default_factory=dict)  # task -> (at, attempt)
    hostile_sent: int = 0  # requests of the hostile client that reached a node
    hostile_accepted: list[tuple[float, str, str]] = field(default_factory=list)  # (at, what, answer)

    # -- clients ------------------------------------------------------------------
    def invoke(self, task_id: str, priority: int, at: float, client: str = "") -> None:
        self.ops.setdefault(task_id, ClientOp(task_id, priority, at, client))

    def ack(self, task_id: str, at: float, term: str | None, replicated: bool | None) -> None:
        op = self.ops[task_id]
        if op.acked_at is None:
            op.acked_at, op.ack_term, op.replicated = at, term, replicated

    def fail(self, task_id: str, at: float, code: str) -> None:
        self.ops[task_id].errors.append(code)
        self.refusals.append((at, code))

    def give_up(self, task_id: str, at: float) -> None:
        self.ops[task_id].gave_up_at = at
        self.fail(task_id, at, "gave_up")

    # -- executors -----------------------------------------------------------------
    def dispatch(self, task_id: str, attempt_id: str, at: float) -> None:
        """A leader sent an attempt on its way (it may never start: the node died, the message was lost)."""
        first = self.first_dispatch.get(task_id)
        if first is None or at < first[0]:
            self.first_dispatch[task_id] = (at, attempt_id)

    def execution_start(self, task_id: str, attempt_id: str, node: str, at: float,
                        dispatched_at: float) -> None:
        self.executions[attempt_id] = Execution(task_id, attempt_id, node, at, dispatched_at)
        self.dispatch(task_id, attempt_id, dispatched_at)

    def execution_end(self, attempt_id: str, at: float, outcome: str) -> None:
        e = self.executions.get(attempt_id)
        if e is not None and e.ended_at is None:
            e.ended_at, e.outcome = at, outcome

    def execution_ended(self, attempt_id: str) -> bool:
        e = self.executions.get(attempt_id)
        return e is not None and e.ended_at is not None

    # -- the cluster ----------------------------------------------------------------
    def note(self, at: float, node: str, kind: str, detail: dict) -> None:
        self.notes.append((at, node, kind, detail))

    def fault(self, at: float, kind: str, arg: Any) -> None:
        self.faults.append((at, kind, arg))

    def ack_issued(self, at: float, leader: str, term: str) -> None:
        self.acks_issued.append((at, leader, term))

    def open_window(self, at: float, kind: str, detail: str = "") -> FaultWindow:
        window = FaultWindow(kind, at, None, detail)
        self.windows.append(window)
        return window

    def close_windows(self, at: float) -> None:
        """The final heal ends every fault still in force."""
        for w in self.windows:
            if w.end_s is None:
                w.end_s = at
