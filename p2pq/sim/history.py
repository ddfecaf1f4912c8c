"""What clients and executors saw, recorded as it happened.

The checker judges a run only by this client-side history and by the final
state of the cluster, never by the protocol's own bookkeeping, the way
Jepsen's total-queue checker judges a queue by what its clients saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ClientOp:
    task_id: str
    priority: int
    invoked_at: float
    acked_at: float | None = None
    ack_term: str | None = None
    replicated: bool | None = None
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
class History:
    ops: dict[str, ClientOp] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    notes: list[tuple[float, str, str, dict]] = field(default_factory=list)
    faults: list[tuple[float, str, Any]] = field(default_factory=list)
    refusals: list[tuple[float, str]] = field(default_factory=list)

    # -- clients ------------------------------------------------------------------
    def invoke(self, task_id: str, priority: int, at: float) -> None:
        self.ops.setdefault(task_id, ClientOp(task_id, priority, at))

    def ack(self, task_id: str, at: float, term: str | None, replicated: bool | None) -> None:
        op = self.ops[task_id]
        if op.acked_at is None:
            op.acked_at, op.ack_term, op.replicated = at, term, replicated

    def fail(self, task_id: str, at: float, code: str) -> None:
        self.ops[task_id].errors.append(code)
        self.refusals.append((at, code))

    # -- executors -----------------------------------------------------------------
    def execution_start(self, task_id: str, attempt_id: str, node: str, at: float,
                        dispatched_at: float) -> None:
        self.executions[attempt_id] = Execution(task_id, attempt_id, node, at, dispatched_at)

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
