"""The history checker: was anything lost, invented, run twice, or out of order?

After Jepsen's total-queue checker, over a client-side history and the final
task table of the cluster:

- attempted:    tasks some client tried to submit;
- acknowledged: tasks whose submit returned an id;
- lost:         acknowledged, yet not finished in the final table (G1);
- unexpected:   in the final table or executed, but never submitted;
- duplicated:   executed to success more than once (G2 allows it only around
                faults; it is counted, never hidden);
- recovered:    never acknowledged (the client gave up) yet finished anyway.

Plus leadership: no term may have two leaders, and a term belongs to the
node that won it (G3); and priority inversions (G4): a task started while a
more urgent task, already acknowledged by the same leader in the same term
and not in retry backoff, waited and started later.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable

from p2pq.core.tasks import SUCCEEDED, TaskRecord

from .history import History


@dataclass(slots=True)
class Report:
    attempted: int = 0
    acknowledged: int = 0
    lost: int = 0
    unexpected: int = 0
    duplicated: int = 0
    recovered: int = 0
    executions: int = 0
    refused: int = 0
    terms: int = 0
    leaders_per_term_max: int = 0
    priority_inversions: int = 0
    lost_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self)


def check(history: History, final: dict[str, TaskRecord], *, check_inversions: bool = True) -> Report:
    """Judge one run; `final` is the task table of the cluster's leader after the drain."""
    r = Report(attempted=len(history.ops), refused=len(history.refusals),
               executions=len(history.executions))
    acked = {t for t, op in history.ops.items() if op.acked_at is not None}
    r.acknowledged = len(acked)
    r.lost_ids = sorted(t for t in acked if t not in final or not final[t].state.terminal)
    r.lost = len(r.lost_ids)
    seen = set(final) | {e.task_id for e in history.executions.values()}
    r.unexpected_ids = sorted(seen - set(history.ops))
    r.unexpected = len(r.unexpected_ids)
    r.recovered = sum(1 for t, rec in final.items()
                      if t in history.ops and t not in acked and rec.state.terminal)
    successes: dict[str, int] = defaultdict(int)
    for e in history.executions.values():
        if e.outcome == SUCCEEDED:
            successes[e.task_id] += 1
    r.duplicated = sum(1 for n in successes.values() if n > 1)
    _check_leaders(history, r)
    if check_inversions:
        r.priority_inversions = count_inversions(history)
    if r.lost:
        r.problems.append(f"lost {r.lost} acknowledged task(s): {', '.join(r.lost_ids[:5])}")
    if r.unexpected:
        r.problems.append(f"{r.unexpected} unexpected task(s): {', '.join(r.unexpected_ids[:5])}")
    return r


def _check_leaders(history: History, r: Report) -> None:
    leaders: dict[str, set[str]] = defaultdict(set)
    for _, node, kind, detail in history.notes:
        if kind == "leader_elected":
            leaders[detail["term"]].add(node)
            owner = detail["term"].split("@", 1)[-1]
            if owner != node:
                r.problems.append(f"node {node} led term {detail['term']} that is not its own")
    r.terms = len(leaders)
    r.leaders_per_term_max = max((len(v) for v in leaders.values()), default=0)
    for term, nodes in leaders.items():
        if len(nodes) > 1:
            r.problems.append(f"term {term} had {len(nodes)} leaders: {sorted(nodes)}")


def count_inversions(history: History) -> int:
    """Starts of a less urgent task while a more urgent acknowledged one waited (same leader term)."""
    first_start: dict[str, float] = {}
    for e in sorted(history.executions.values(), key=lambda e: e.dispatched_at):
        first_start.setdefault(e.task_id, e.dispatched_at)
    acked = [(op.acked_at, op.priority, op.task_id, op.ack_term) for op in history.ops.values()
             if op.acked_at is not None and op.task_id in first_start]
    inversions = 0
    for e in history.executions.values():
        op = history.ops.get(e.task_id)
        term = _attempt_term(e.attempt_id)
        if op is None or first_start[e.task_id] != e.dispatched_at:
            continue
        for acked_at, priority, task_id, ack_term in acked:
            if (priority < op.priority and ack_term == term and acked_at < e.dispatched_at
                    and first_start[task_id] > e.dispatched_at):
                inversions += 1
                break
    return inversions


def _attempt_term(attempt_id: str) -> str:
    number, rest = attempt_id.split(".", 1)
    return f"{number}@{rest.rsplit('.', 1)[0]}"


def merge_reports(reports: Iterable[Report]) -> dict:
    """Sum a sweep of runs into one table."""
    total: dict = defaultdict(int)
    failing = 0
    for rep in reports:
        for key in ("attempted", "acknowledged", "lost", "unexpected", "duplicated", "recovered",
                    "executions", "refused", "terms", "priority_inversions"):
            total[key] += getattr(rep, key)
        total["leaders_per_term_max"] = max(total["leaders_per_term_max"], rep.leaders_per_term_max)
        failing += 0 if rep.ok else 1
    total["failing_runs"] = failing
    return dict(total)
