"""Tasks, their attempts, and the lattice that merges two copies of a task.

Theory of operation
-------------------
A task record is never edited in place; every change makes a new record, and
any two records of one task can be *joined*:

- the spec, submit order and submit time never change after submit;
- attempts are a union keyed by attempt id; two copies of one attempt join
  to the one that knows more (ended beats running, a real outcome beats
  ``lost``);
- ``cancelled`` only goes from False to True.

The join is commutative, associative and idempotent, so replication can
ship whole records in any order, twice, or after a partition, and every copy
converges. The task's state is *derived* from the record, which gives the
order the contract needs: a terminal state beats running beats queued.

- succeeded: some attempt succeeded;
- cancelled: a cancel was requested (and nothing succeeded);
- failed:    more failed attempts than retries allow;
- running:   some attempt has not ended;
- queued:    otherwise; eligible once the retry backoff has passed.

An attempt whose node died is ended with outcome ``lost``; it does not count
against the task's retries (L3: the task simply goes back to the queue).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from . import schema
from .schema import DecodeError
from .types import NodeId


class TaskState(enum.Enum):
    BLOCKED = "blocked"  # waits for the tasks it runs after (TaskSpec.after) to succeed
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


KINDS = ("builtin", "python", "shell")
SUCCEEDED, FAILED, TIMEOUT, CANCELLED, LOST = "succeeded", "failed", "timeout", "cancelled", "lost"
DEPENDENCY_FAILED = "after:"  # the attempt id prefix of "a task it runs after failed" (dependencies.py)
_OUTCOME_RANK = {None: 0, LOST: 1, CANCELLED: 2, FAILED: 3, TIMEOUT: 3, SUCCEEDED: 4}
_FAILURES = (FAILED, TIMEOUT)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What to run and how; immutable once submitted.

    ``options`` carries kind-specific settings the core never reads
    (keyword arguments, working directory, environment). ``after`` names
    the tasks that must succeed before this one may run (dependencies.py).
    """

    kind: str
    target: str
    args: tuple = ()
    priority: int = 5
    retries: int = 0
    timeout_s: float | None = None
    options: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()
    _bytes: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def approx_bytes(self) -> int:
        """About what the spec takes on the wire (an upper bound for ASCII; computed once)."""
        size = self._bytes
        if size is None:
            size = 64 + approx_bytes(self.target) + approx_bytes(self.args) + approx_bytes(self.options)
            if self.after:
                size += approx_bytes(self.after)
            object.__setattr__(self, "_bytes", size)
        return size

    def validate(self) -> None:
        """Raise ValueError (a DecodeError) with a one-line reason for a spec no node could run."""
        check_spec(self.kind, self.target, self.args, self.priority, self.retries, self.timeout_s,
                   self.options)
        if self.after:
            check_after(self.after)
        check_size(self)


MAX_AFTER = 1000  # dependencies of one task


def check_after(after: Any) -> tuple[str, ...]:
    """The ids a task runs after: at most MAX_AFTER task ids."""
    ids = schema.id_list(after, "after")
    if len(ids) > MAX_AFTER:
        raise DecodeError(f"after: a task may wait for at most {MAX_AFTER} others, got {len(ids):,}")
    return tuple(ids)


def check_size(spec: TaskSpec) -> None:
    """A task that could never be replicated whole is refused at submit (records travel in frames)."""
    if spec.approx_bytes > schema.MAX_SPEC_BYTES:
        raise DecodeError(f"the task's arguments take about {spec.approx_bytes:,} bytes, over the limit of "
                          f"{schema.MAX_SPEC_BYTES:,}; put big inputs in a file the nodes share and pass its path")


_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_PYTHON_TARGET = re.compile(rf"{_DOTTED}:{_DOTTED}")
_BUILTIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def check_spec(kind: Any, target: Any, args: Any, priority: Any, retries: Any, timeout_s: Any,
               options: Any) -> None:
    """Every rule a task spec must keep, for the decoder and for submit alike (G5).

    Types and ranges first (see schema.py), then what can be told of the
    task without running it: the import-path syntax of a python task, the
    name of a built-in, the arguments of a shell command. Every record a
    node receives passes here, so the common case takes the short way.
    """
    if kind not in KINDS:
        raise DecodeError(f"unknown task kind {schema._show(kind)}; expected one of {', '.join(KINDS)}")
    if type(target) is not str or not target:
        raise DecodeError("a task needs a target (a built-in name, pkg.mod:fn or a command)")
    if len(target) > schema.MAX_TARGET_CHARS:
        schema.text(target, "the task's target", schema.MAX_TARGET_CHARS)
    if kind == "python" and not _PYTHON_TARGET.fullmatch(target):
        raise DecodeError(f"python task {target!r} must be written as pkg.module:function")
    if kind == "builtin" and not _BUILTIN_NAME.fullmatch(target):
        raise DecodeError(f"{target!r} is not a built-in task name (a python task is written "
                          "pkg.module:function, a shell command after --)")
    _check_args(kind, args)
    if type(priority) is not int or not schema.INT64_MIN <= priority <= schema.INT64_MAX:
        schema.integer(priority, "priority")
    if type(retries) is not int or not 0 <= retries <= schema.MAX_RETRIES:
        schema.integer(retries, "retries", 0, schema.MAX_RETRIES)
    if timeout_s is not None:
        schema.number(timeout_s, "timeout_s", 0.0, schema.MAX_TIMEOUT_S)
        if timeout_s <= 0:
            raise DecodeError(f"timeout must be positive, got {timeout_s}")
    if options or type(options) is not dict:
        _check_options(options)


def _check_args(kind: str, args: Any) -> None:
    schema.items(args, "the task's arguments", schema.MAX_ARGS)
    shell = kind == "shell"
    for arg in args:
        t = type(arg)
        if t is str or (t is int and schema.INT64_MIN <= arg <= schema.UINT64_MAX) \
                or (t is float and arg - arg == 0.0):  # finite
            continue
        if not shell and (t is bool or arg is None):
            continue
        schema.json_value(arg, "an argument")
        if shell:
            raise DecodeError(f"shell arguments must be strings or numbers, got {schema._show(arg)}")


def _check_options(options: Any) -> None:
    schema.mapping(options, "the task's options", 64)
    for key, value in options.items():
        if key == "cwd":
            schema.text(value, "cwd")
        elif key == "path":
            schema.text(value, "path")
            if not value.startswith("/"):
                raise DecodeError(f"path must be an absolute directory, got {schema._show(value)}")
        elif key == "env":
            schema.mapping(value, "env", 1024)
            for v in value.values():
                schema.text(v, "an env value", empty=True)
        elif key == "kwargs":
            schema.mapping(value, "kwargs", schema.MAX_ARGS)
            schema.json_value(value, "a keyword argument")
        else:
            schema.json_value(value, f"option {key!r}")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One execution of a task on one node, as far as anyone knows it."""

    attempt_id: str
    node: NodeId
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None
    result: dict | None = None

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def join(self, other: Attempt) -> Attempt:
        """The copy that knows more: ended beats running, real beats lost.

        Ties are broken on every field, so the join is a total order and
        copies converge whichever way round they meet.
        """
        if self is other or self == other:
            return self
        mine = (_OUTCOME_RANK[self.outcome], -(self.ended_at or 0.0))
        theirs = (_OUTCOME_RANK[other.outcome], -(other.ended_at or 0.0))
        if mine != theirs:
            return self if mine > theirs else other
        return self if self._tie_key() >= other._tie_key() else other

    def _tie_key(self) -> tuple:
        return (self.outcome or "", repr(sorted(self.result.items())) if self.result else "")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """The replicated unit: a task and everything known about its attempts."""

    task_id: str
    spec: TaskSpec
    seq: tuple[int, int]
    submitted_at: float
    attempts: tuple[Attempt, ...] = ()
    cancelled: bool = False
    released: bool = False  # every task it runs after succeeded: it may run (a spec with `after`)
    _state: TaskState | None = field(default=None, init=False, repr=False, compare=False)
    _bytes: int | None = field(default=None, init=False, repr=False, compare=False)
    _fingerprint: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def fingerprint(self) -> int:
        """64 bits that name this record's place in the lattice: its attempts and cancel flag.

        Two copies with equal fingerprints are equal (join of one into the
        other changes nothing) but for a 2^-64 chance; two equal copies whose
        fingerprints differ cost only a resend. Computed once.
        """
        fp = self._fingerprint
        if fp is None:
            attempts = tuple((a.attempt_id, a.node, a.outcome, a.ended_at) for a in self.attempts)
            text = repr((self.task_id, self.cancelled, attempts) if not self.released else
                        (self.task_id, self.cancelled, attempts, True))
            fp = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            object.__setattr__(self, "_fingerprint", fp)
        return fp

    @property
    def approx_bytes(self) -> int:
        """About what the record takes on the wire, to cap replication chunks (computed once)."""
        size = self._bytes
        if size is None:
            size = 64 + len(self.task_id) + self.spec.approx_bytes + sum(
                96 + approx_bytes(a.result) for a in self.attempts)
            object.__setattr__(self, "_bytes", size)
        return size

    # -- derived state ---------------------------------------------------
    @property
    def state(self) -> TaskState:
        """Derived from the attempts and the cancel flag (computed once: a record never changes)."""
        state = self._state
        if state is None:
            state = self._derive_state()
            object.__setattr__(self, "_state", state)
        return state

    def _derive_state(self) -> TaskState:
        running, failures = False, 0
        for a in self.attempts:
            if a.outcome == SUCCEEDED:
                return TaskState.SUCCEEDED
            if a.ended_at is None:
                running = True
            if a.outcome in _FAILURES:
                if a.attempt_id.startswith(DEPENDENCY_FAILED):
                    return TaskState.FAILED  # a task it runs after failed: no retry can help
                failures += 1
        if self.cancelled:
            return TaskState.CANCELLED
        if failures > self.spec.retries:
            return TaskState.FAILED
        if running:
            return TaskState.RUNNING
        return TaskState.BLOCKED if self.spec.after and not self.released else TaskState.QUEUED

    @property
    def failures(self) -> int:
        return sum(1 for a in self.attempts if a.outcome in _FAILURES)

    def running_attempts(self) -> Iterator[Attempt]:
        return (a for a in self.attempts if a.running)

    def has_running_attempt(self) -> bool:
        for a in self.attempts:
            if a.running:
                return True
        return False

    def attempt(self, attempt_id: str) -> Attempt | None:
        for a in self.attempts:
            if a.attempt_id == attempt_id:
                return a
        return None

    def eligible_at(self, backoff_s: float, backoff_max_s: float) -> float:
        """When a queued task may run again: after its retry backoff."""
        n = self.failures
        if n == 0:
            return float("-inf")
        last_end = max(a.ended_at or 0.0 for a in self.attempts if a.outcome in _FAILURES)
        return last_end + min(backoff_s * 2 ** (n - 1), backoff_max_s)

    def finished_at(self) -> float:
        """When the task reached its terminal state, as far as the record tells."""
        ends = [a.ended_at for a in self.attempts if a.ended_at is not None]
        return max(ends, default=self.submitted_at)

    def final_attempt(self) -> Attempt | None:
        """The attempt that decided a terminal state (the success, else the last end)."""
        ended = [a for a in self.attempts if not a.running and a.outcome != LOST]
        for a in ended:
            if a.outcome == SUCCEEDED:
                return a
        return max(ended, key=lambda a: a.ended_at or 0.0, default=None)

    # -- changes -----------------------------------------------------------
    def with_attempt(self, attempt: Attempt) -> TaskRecord:
        """This record with `attempt` joined into its attempts."""
        merged = _join_attempts(self.attempts, (attempt,))
        if merged is self.attempts:
            return self
        return TaskRecord(self.task_id, self.spec, self.seq, self.submitted_at, merged, self.cancelled,
                          self.released)

    def join(self, other: TaskRecord) -> TaskRecord:
        """The lattice join of two copies of the same task."""
        if other is self or (other.attempts == self.attempts and other.cancelled == self.cancelled
                             and other.released == self.released):
            return self
        attempts = _join_attempts(self.attempts, other.attempts)
        cancelled = self.cancelled or other.cancelled
        released = self.released or other.released
        if attempts is self.attempts and cancelled == self.cancelled and released == self.released:
            return self
        return TaskRecord(self.task_id, self.spec, self.seq, self.submitted_at, attempts, cancelled, released)


def approx_bytes(value: Any) -> int:
    """An estimate of a plain value's msgpack size: exact enough to keep chunks well under a frame."""
    t = type(value)
    if t is str:
        return 5 + (len(value) if value.isascii() else 4 * len(value))
    if t is list or t is tuple:
        return 5 + sum(approx_bytes(v) for v in value)
    if t is dict:
        return 5 + sum(approx_bytes(k) + approx_bytes(v) for k, v in value.items())
    if t is bytes:
        return 5 + len(value)
    return 9


def stream_chunks(records: list[TaskRecord], max_records: int,
                  max_bytes: int) -> Iterator[tuple[int, list[TaskRecord], bool]]:
    """Records in consecutive chunks of at most max_records and about max_bytes (a big
    record alone), cut as they are consumed: (part number, records, last?).

    A sender that paces a big snapshot measures each record only when its
    part goes, instead of the whole table in one step. At least one part,
    empty for no records.
    """
    n, at, end = 0, 0, len(records)
    while True:
        chunk: list[TaskRecord] = []
        size = 0
        while at < end:
            record = records[at]
            size_of = record.approx_bytes
            if chunk and (len(chunk) >= max_records or size + size_of > max_bytes):
                break
            chunk.append(record)
            size += size_of
            at += 1
        yield n, chunk, at >= end
        if at >= end:
            return
        n += 1


def next_part(progress: tuple | None, key: object, part: int, parts: int) -> tuple[tuple | None, bool | None]:
    """One more part of a message that comes in `parts` consecutive parts (a snapshot, a state offer).

    `progress` is (key, next part expected) or None. Returns the new progress
    and True once the last part arrives after all the others in order, None
    while parts are still due, False when this part shows one went missing.
    """
    if part == 0:
        progress = (key, 0)
    if progress != (key, part):
        return None, False
    if part < parts - 1:
        return (key, part + 1), None
    return None, True


def _join_attempts(a: tuple[Attempt, ...], b: tuple[Attempt, ...]) -> tuple[Attempt, ...]:
    """The union of two attempt lists by id, each attempt joined; `a` itself if nothing changed.

    Attempts are ordered by (start, id). The common cases, one attempt that
    is new and the latest or one that ended, take no sort.
    """
    if len(b) == 1:
        y = b[0]
        for i, x in enumerate(a):
            if x.attempt_id == y.attempt_id:
                joined = x.join(y)
                if joined is x:
                    return a
                if joined.started_at == x.started_at:
                    return a[:i] + (joined,) + a[i + 1:]
                break  # a copy with another start time: re-sort below
        else:
            if not a or (a[-1].started_at, a[-1].attempt_id) < (y.started_at, y.attempt_id):
                return a + (y,)
    by_id = {x.attempt_id: x for x in a}
    changed = False
    for y in b:
        x = by_id.get(y.attempt_id)
        joined = y if x is None else x.join(y)
        if joined is not x:
            by_id[y.attempt_id] = joined
            changed = True
    if not changed:
        return a
    return tuple(sorted(by_id.values(), key=lambda x: (x.started_at, x.attempt_id)))


DIGEST_BUCKETS = 4096
DIGEST_BYTES = 8 * DIGEST_BUCKETS
_DIGEST_FORMAT = struct.Struct(f"<{DIGEST_BUCKETS}Q")


def bucket_of(task_id: str) -> int:
    return zlib.crc32(task_id.encode()) & (DIGEST_BUCKETS - 1)


def differing_buckets(mine: bytes, theirs: bytes) -> set[int] | None:
    """Buckets whose digests differ; None (all of them) if either side has none."""
    if len(mine) != DIGEST_BYTES or len(theirs) != DIGEST_BYTES:
        return None
    if mine == theirs:
        return set()
    a, b = _DIGEST_FORMAT.unpack(mine), _DIGEST_FORMAT.unpack(theirs)
    return {i for i in range(DIGEST_BUCKETS) if a[i] != b[i]}


class TaskTable:
    """Every task record this node holds, plus the priority queue of runnable ones.

    The queue is a heap of (priority, seq, task_id) with lazy deletion: an
    entry is checked against the record when popped, so a task that started
    or finished elsewhere is skipped instead of searched for (G4: the most
    urgent queued task first, ties in submit order).
    """

    def __init__(self) -> None:
        self.records: dict[str, TaskRecord] = {}
        self._heap: list[tuple[int, tuple[int, int], str]] = []
        self._queued: set[str] = set()
        # (finished at, id) of every finished task, oldest first; checked when popped
        self._finished: list[tuple[float, str]] = []
        self.counts: dict[TaskState, int] = {s: 0 for s in TaskState}
        # Per bucket of task ids, the XOR of the records' fingerprints: two tables
        # compare bucket by bucket, and only records of differing buckets travel.
        self._digests = [0] * DIGEST_BUCKETS
        self._buckets: list[dict[str, None]] = [{} for _ in range(DIGEST_BUCKETS)]  # ids, in arrival order
        self._running: dict[str, None] = {}  # ids of the records with an attempt still running
        self._blocked: dict[str, None] = {}  # ids of the blocked records (TaskState.BLOCKED)
        self._dependents: dict[str, list[str]] = {}  # a task id -> the blocked tasks that run after it

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.records

    def get(self, task_id: str) -> TaskRecord | None:
        return self.records.get(task_id)

    def merge(self, record: TaskRecord) -> TaskRecord | None:
        """Join `record` in; returns the new record if anything changed, else None."""
        old = self.records.get(record.task_id)
        new = record if old is None else old.join(record)
        if new is old:
            return None
        task_id = record.task_id
        self.records[task_id] = new
        bucket = bucket_of(task_id)
        self._digests[bucket] ^= new.fingerprint ^ (old.fingerprint if old is not None else 0)
        if old is not None:
            self.counts[old.state] -= 1
        else:
            self._buckets[bucket][task_id] = None
        if new.has_running_attempt():
            self._running[task_id] = None
        elif old is not None:
            self._running.pop(task_id, None)
        state = new.state
        self.counts[state] += 1
        if state.terminal and (old is None or not old.state.terminal):
            heapq.heappush(self._finished, (new.finished_at(), new.task_id))
        if state is TaskState.QUEUED and record.task_id not in self._queued:
            self._queued.add(record.task_id)
            heapq.heappush(self._heap, (new.spec.priority, new.seq, new.task_id))
        if state is TaskState.BLOCKED:
            if task_id not in self._blocked:
                self._blocked[task_id] = None
                for dep in dict.fromkeys(new.spec.after):
                    self._dependents.setdefault(dep, []).append(task_id)
        elif old is not None and old.state is TaskState.BLOCKED:
            self._blocked.pop(task_id, None)
        return new

    def blocked(self) -> list[str]:
        """The ids of the blocked tasks, in arrival order."""
        return list(self._blocked)

    def has_dependents(self, task_id: str) -> bool:
        return task_id in self._dependents

    def take_dependents(self, task_id: str) -> list[str]:
        """The blocked tasks that ran after `task_id` (it ended: each is decided now); forgotten here."""
        return [t for t in self._dependents.pop(task_id, ()) if t in self._blocked]

    def pop_runnable(self, now: float, backoff_s: float, backoff_max_s: float) -> tuple[TaskRecord | None, float | None]:
        """The most urgent queued task eligible at `now`, and the earliest later eligibility.

        Tasks still in retry backoff are set aside and pushed back, so they keep
        their place in the queue for when their time comes.
        """
        deferred: list[tuple[int, tuple[int, int], str]] = []
        found: TaskRecord | None = None
        next_at: float | None = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            record = self.records.get(entry[2])
            if record is None or record.state is not TaskState.QUEUED:
                self._queued.discard(entry[2])
                continue
            at = record.eligible_at(backoff_s, backoff_max_s)
            if at > now + backoff_max_s:
                at = now  # the failure was stamped by a clock ahead of ours: do not wait out the skew
            if at > now:
                deferred.append(entry)
                next_at = at if next_at is None else min(next_at, at)
                continue
            self._queued.discard(entry[2])
            found = record
            break
        for entry in deferred:
            heapq.heappush(self._heap, entry)
        return found, next_at

    def oldest_finished(self, keep: int, before: float) -> list[str]:
        """The finished tasks beyond the newest `keep` or finished before `before`, oldest first.

        They leave this index (the caller removes them from the table); an
        entry whose task is gone is dropped, one whose task finished again
        later (a second attempt) moves to its new place.
        """
        finished = sum(n for state, n in self.counts.items() if state.terminal)
        victims: list[str] = []
        heap = self._finished
        while heap:
            at, task_id = heap[0]
            record = self.records.get(task_id)
            if record is None:
                heapq.heappop(heap)
                continue
            now_at = record.finished_at()
            if now_at != at:
                heapq.heapreplace(heap, (now_at, task_id))
                continue
            if finished - len(victims) <= keep and at >= before:
                break
            heapq.heappop(heap)
            victims.append(task_id)
        return victims

    def remove(self, task_id: str) -> TaskRecord | None:
        """Drop a record (pruned); its heap entry, if any, is skipped lazily."""
        record = self.records.pop(task_id, None)
        if record is not None:
            bucket = bucket_of(task_id)
            self._digests[bucket] ^= record.fingerprint
            del self._buckets[bucket][task_id]
            self._running.pop(task_id, None)
            self._blocked.pop(task_id, None)
            self._dependents.pop(task_id, None)
            self.counts[record.state] -= 1
            self._queued.discard(task_id)
        return record

    def values(self) -> Iterable[TaskRecord]:
        return self.records.values()

    def digests(self) -> bytes:
        """The bucket digests, DIGEST_BYTES long, to compare with another node's."""
        return _DIGEST_FORMAT.pack(*self._digests)

    def values_unlike(self, theirs: bytes) -> Iterable[TaskRecord]:
        """The records that may differ from the table `theirs` describes (all, if it describes none)."""
        buckets = differing_buckets(self.digests(), theirs)
        if buckets is None:
            return self.records.values()
        records = self.records
        return [records[task_id] for bucket in sorted(buckets) for task_id in self._buckets[bucket]]

    def with_running_attempts(self) -> list[TaskRecord]:
        """The records with an attempt still running (a new leader's assignments), without a scan."""
        return [self.records[task_id] for task_id in self._running]


def describe(record: TaskRecord) -> dict[str, Any]:
    """A JSON-able view of a record for clients and the dashboard."""
    final = record.final_attempt()
    view = {
        "id": record.task_id,
        "state": record.state.value,
        "kind": record.spec.kind,
        "target": record.spec.target,
        "args": list(record.spec.args),
        "priority": record.spec.priority,
        "retries": record.spec.retries,
        "timeout_s": record.spec.timeout_s,
        "submitted_at": record.submitted_at,
        "attempts": [
            {
                "id": a.attempt_id, "node": a.node, "started_at": a.started_at,
                "ended_at": a.ended_at, "outcome": a.outcome, "result": a.result,
            }
            for a in record.attempts
        ],
        "result": final.result if final is not None else None,
    }
    if record.spec.after:
        view["after"] = list(record.spec.after)
    return view


def describe_end(record: TaskRecord) -> dict[str, Any]:
    """The short view a watch pushes of a finished task: how it ended, not what it was asked."""
    final = record.final_attempt()
    return {
        "id": record.task_id,
        "state": record.state.value,
        "attempts": len(record.attempts),
        "node": final.node if final is not None else None,
        "result": final.result if final is not None else None,
    }
