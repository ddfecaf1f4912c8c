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

Leadership (G3): no term may have two leaders, and a term belongs to the
node that won it. Two clocks of split brain: `multi_leader_s`, the time more
than one node held the LEADER role (a minority leader in quorum mode still
holds it, refusing submits), and `concurrent_ack_s`, the time two terms were
both acknowledging submits, measured at the leaders from the moment each
term acknowledged first to the moment it acknowledged last. `stale_acks`
counts acknowledgments under a term older than one that already
acknowledged. In quorum mode both must be zero.

Availability: `failover_s`, per fault that deposed a leader, the time until
a newer term acknowledged a submit (L1); unavailability windows, the union
of the intervals in which a client waited longer than UNAVAILABLE_AFTER_S
for an acknowledgment. Priority inversions (G4): a task started while a more
urgent task, acknowledged by the same leader in the same term, waited and
started later.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from p2pq.core.tasks import SUCCEEDED, TaskRecord
from p2pq.core.types import Term, attempt_term
from p2pq.stats import percentile

from .history import History

UNAVAILABLE_AFTER_S = 0.5  # a healthy submit takes milliseconds; half a second is an outage


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
    gave_up: int = 0
    terms: int = 0
    leaders_per_term_max: int = 0
    priority_inversions: int = 0
    multi_leader_s: float = 0.0
    concurrent_ack_s: float = 0.0
    stale_acks: int = 0
    failover_s: list[float] = field(default_factory=list)
    failovers_unfinished: int = 0
    unavailable_s: float = 0.0
    unavailable_windows: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    internal_errors: int = 0          # events a node failed to handle (G5)
    codec_errors: int = 0             # messages a node sent that the wire codec refused
    hostile_sent: int = 0             # requests of the hostile client
    hostile_accepted: int = 0         # of those, answered other than "invalid"
    refused_by_code: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    lost_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self)


def check(history: History, final: dict[str, TaskRecord], *, quorum: bool = False,
          messages: dict[str, int] | None = None, check_inversions: bool = True,
          codec_errors: list[str] | None = None) -> Report:
    """Judge one run; `final` is the task table of the cluster's leader after the drain."""
    r = Report(attempted=len(history.ops), executions=len(history.executions),
               messages=dict(sorted((messages or {}).items())))
    _check_edges(history, codec_errors or [], r)
    _count_tasks(history, final, r)
    _count_refusals(history, r)
    _check_leaders(history, r)
    _check_acks(history, r, quorum)
    _measure_availability(history, r)
    if check_inversions:
        r.priority_inversions = count_inversions(history)
    if r.lost:
        r.problems.append(f"lost {r.lost} acknowledged task(s): {', '.join(r.lost_ids[:5])}")
    if r.unexpected:
        r.problems.append(f"{r.unexpected} unexpected task(s): {', '.join(r.unexpected_ids[:5])}")
    return r


def _check_edges(history: History, codec_errors: list[str], r: Report) -> None:
    """G5: no event failed inside a node, the wire took every message, every hostile request was refused."""
    errors = [(at, node, d) for at, node, kind, d in history.notes if kind == "internal_error"]
    r.internal_errors, r.codec_errors = len(errors), len(codec_errors)
    r.hostile_sent, r.hostile_accepted = history.hostile_sent, len(history.hostile_accepted)
    if errors:
        at, node, d = errors[0]
        r.problems.append(f"{len(errors)} internal error(s), the first at {at:.3f} on {node} "
                          f"handling {d.get('event')}: {d.get('error')}")
    if codec_errors:
        r.problems.append(f"{len(codec_errors)} message(s) refused by the wire codec, the first: "
                          f"{codec_errors[0]}")
    if history.hostile_accepted:
        at, what, answer = history.hostile_accepted[0]
        r.problems.append(f"{len(history.hostile_accepted)} hostile request(s) not refused as invalid, "
                          f"the first at {at:.3f} ({what}) answered {answer}")


def _count_tasks(history: History, final: dict[str, TaskRecord], r: Report) -> None:
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


def _count_refusals(history: History, r: Report) -> None:
    codes: dict[str, int] = defaultdict(int)
    for _, code in history.refusals:
        codes[code] += 1
    r.refused_by_code = dict(sorted(codes.items()))
    r.gave_up = codes.get("gave_up", 0)
    r.refused = sum(codes.values()) - r.gave_up


def _check_leaders(history: History, r: Report) -> None:
    leaders: dict[str, set[str]] = defaultdict(set)
    for _, node, kind, detail in history.notes:
        if kind == "leader_elected":
            leaders[detail["term"]].add(node)
            owner = Term.parse(detail["term"]).node
            if owner != node:
                r.problems.append(f"node {node} led term {detail['term']} that is not its own")
    r.terms = len(leaders)
    r.leaders_per_term_max = max((len(v) for v in leaders.values()), default=0)
    for term, nodes in leaders.items():
        if len(nodes) > 1:
            r.problems.append(f"term {term} had {len(nodes)} leaders: {sorted(nodes)}")
    spans = [(lead.start_s, lead.end_s) for lead in history.leaderships if lead.end_s is not None]
    r.multi_leader_s = round(overlap_s(spans), 6)


def _check_acks(history: History, r: Report, quorum: bool) -> None:
    """G3 in quorum mode: never two terms acknowledging at once, never an old term after a new one."""
    spans: dict[str, list[float]] = {}
    newest: tuple | None = None
    for at, _, term in history.acks_issued:
        span = spans.setdefault(term, [at, at])
        span[1] = at
        key = Term.parse(term)
        if newest is not None and key < newest:
            r.stale_acks += 1
        newest = key if newest is None else max(newest, key)
    r.concurrent_ack_s = round(overlap_s([(a, b) for a, b in spans.values()]), 6)
    if quorum and (r.stale_acks or r.concurrent_ack_s > 0):
        r.problems.append(f"quorum mode: two leaders acknowledged at once ({r.concurrent_ack_s:.3f} s "
                          f"of overlap, {r.stale_acks} acknowledgment(s) under an older term)")


def _measure_availability(history: History, r: Report) -> None:
    waits, latencies = [], []
    for op in history.ops.values():
        if op.client == "preload":
            continue  # a world's preloaded table: acknowledged before the run
        end = op.acked_at if op.acked_at is not None else op.gave_up_at
        if op.acked_at is not None:
            latencies.append(op.acked_at - op.invoked_at)
        if end is not None and end - op.invoked_at > UNAVAILABLE_AFTER_S:
            waits.append((op.invoked_at, end))
    windows = union(waits)
    r.unavailable_windows = len(windows)
    r.unavailable_s = round(sum(b - a for a, b in windows), 6)
    if latencies:
        latencies.sort()
        r.latency_p50_s = round(percentile(latencies, 50), 6)
        r.latency_p99_s = round(percentile(latencies, 99), 6)
    r.failover_s, r.failovers_unfinished = failover_times(history)


def failover_times(history: History) -> tuple[list[float], int]:
    """Per deposed leader: seconds until a newer term acknowledged a submit (L1)."""
    acks = [(at, Term.parse(term)) for at, _, term in history.acks_issued]
    times, unfinished = [], 0
    for at, _, term in history.leader_losses:
        old = Term.parse(term)
        first = next((t for t, key in acks if t >= at and key > old), None)
        if first is None:
            unfinished += 1
        else:
            times.append(round(first - at, 6))
    return times, unfinished


def count_inversions(history: History) -> int:
    """First dispatches of a less urgent task while a more urgent acknowledged one waited (same term).

    Dispatches are what the world saw leave the leader (a Dispatch message,
    or a task the leader ran itself), including those that never started.
    A sweep over time per term: an acknowledged task waits from its
    acknowledgment to its first dispatch; each first dispatch asks whether
    a more urgent task was waiting. At equal times, departures come before
    questions and questions before arrivals, so a batch dispatched in one
    step in priority order is not an inversion.
    """
    first = {task: (at, str(attempt_term(attempt))) for task, (at, attempt) in history.first_dispatch.items()}
    events: dict[str, list[tuple[float, int, int, str]]] = defaultdict(list)
    for op in history.ops.values():
        if op.task_id not in first:
            continue
        started_at, term = first[op.task_id]
        events[term].append((started_at, 1, op.priority, op.task_id))
        if op.acked_at is not None:  # it waits in the queue of the term that acknowledged it
            events[op.ack_term].append((op.acked_at, 2, op.priority, op.task_id))
            events[op.ack_term].append((started_at, 0, op.priority, op.task_id))
    return sum(_inversions_in_term(evs) for evs in events.values())


def _inversions_in_term(events: list[tuple[float, int, int, str]]) -> int:
    waiting: list[tuple[int, str]] = []
    gone: set[str] = set()
    inversions = 0
    for _, kind, priority, task_id in sorted(events):
        if kind == 0:
            gone.add(task_id)
        elif kind == 2:
            heapq.heappush(waiting, (priority, task_id))
        else:
            while waiting and waiting[0][1] in gone:
                heapq.heappop(waiting)
            if waiting and waiting[0][0] < priority:
                inversions += 1
    return inversions


# -- small helpers ---------------------------------------------------------------------
def union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge overlapping intervals."""
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def overlap_s(spans: list[tuple[float, float]]) -> float:
    """Total time covered by at least two of the intervals."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    total, depth, last = 0.0, 0, 0.0
    for at, step in edges:
        if depth >= 2:
            total += at - last
        depth += step
        last = at
    return total
