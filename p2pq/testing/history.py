"""Recording a real cluster's history for the simulator's checker (p2pq.sim.checker).

What is recorded, and from where (all times wall-clock seconds, `time.time()`,
the clock the nodes stamp attempts with; every process runs on this machine):

- clients (this process): every submit invoked, every try of it and its
  error code, its acknowledgment with the reply's term and leader, or the
  moment the client gave up. Submits carry client-made ids, so a retried
  submit is the same task (Workload).
- executions: every attempt in the cluster's final task table (node, start,
  end, outcome), and, independently of the protocol's bookkeeping, a side
  effect: the task (`mark`) appends one line to a shared file when it has
  run, so a run that no attempt accounts for would show (G2).
- leadership: the `leader_elected` / `stepped_down` notes in the nodes' logs,
  and the faults this process caused (kills end a leadership).

`judge` then builds the final table from the leader after the drain and runs
the same `check()` as the simulator: lost, duplicated, unexpected, recovered.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from p2pq.client import AsyncClient, Client, P2PQError, make_spec, new_task_id
from p2pq.core.errors import ErrorCode
from p2pq.core.messages import Submit
from p2pq.core.tasks import Attempt, TaskRecord, TaskSpec
from p2pq.sim import history as sim_history
from p2pq.sim.checker import Report, check

from .cluster import wait_for

MARK_TASK = "p2pq.testing.history:mark"
# Worth trying another node: this one is gone, frozen, cut off, or alone.
SWITCH_NODE_ON = {ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.UNREPLICATED, ErrorCode.NO_QUORUM}


def mark(task_id: str, log_path: str, sleep_s: float = 0.0) -> str:
    """The test task: wait `sleep_s`, then append 'task node time' to `log_path` (one run, one line)."""
    if sleep_s > 0:
        time.sleep(sleep_s)
    node = os.environ.get("P2PQ_TEST_NODE", "?")
    line = f"{task_id} {node} {time.time():.6f}\n".encode()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # O_APPEND: one short write is one whole line, whoever else writes
    finally:
        os.close(fd)
    return node


class Recorder:
    """A p2pq.sim History fed from several threads, plus the faults of the run."""

    def __init__(self) -> None:
        self.history = sim_history.History()
        self.lock = threading.Lock()
        self.kills: list[tuple[float, str]] = []  # (at, node): ends whatever that node led

    def invoke(self, task_id: str, priority: int, client: str) -> None:
        with self.lock:
            self.history.invoke(task_id, priority, time.time(), client)

    def ack(self, task_id: str, reply: dict) -> None:
        at = time.time()
        with self.lock:
            self.history.ack(task_id, at, reply.get("term"), reply.get("replicated"))
            if hasattr(self.history, "ack_issued"):  # seen at the client, not at the leader
                self.history.ack_issued(at, str(reply.get("leader")), str(reply.get("term")))

    def fail(self, task_id: str, code: str) -> None:
        with self.lock:
            self.history.fail(task_id, time.time(), code)

    def give_up(self, task_id: str) -> None:
        with self.lock:
            if hasattr(self.history, "give_up"):
                self.history.give_up(task_id, time.time())
            else:
                self.history.fail(task_id, time.time(), "gave_up")

    def fault(self, kind: str, arg: Any = None, *, node: str | None = None,
              leader: tuple[str, str] | None = None) -> float:
        """Note a fault now; `node` dies (kill), `leader` (node, term) is deposed by it."""
        at = time.time()
        with self.lock:
            self.history.fault(at, kind, arg)
            if node is not None and kind.startswith("kill"):
                self.kills.append((at, node))
            if leader is not None and hasattr(self.history, "leader_losses"):
                self.history.leader_losses.append((at, leader[0], leader[1]))
        return at

    def acks(self) -> list[tuple[float, str, str, float]]:
        """(acked_at, task, term, invoked_at) of every acknowledged submit, in time order."""
        with self.lock:
            out = [(op.acked_at, op.task_id, op.ack_term or "", op.invoked_at)
                   for op in self.history.ops.values() if op.acked_at is not None]
        return sorted(out)

    def acked_ids(self) -> set[str]:
        with self.lock:
            return {t for t, op in self.history.ops.items() if op.acked_at is not None}

    def first_ack_after(self, at: float, accept: Callable[[str], bool]) -> float | None:
        """When the first submit acknowledged after `at` under a term `accept`ed was acknowledged."""
        return next((t for t, _, term, _ in self.acks() if t >= at and accept(term)), None)


@dataclass
class Workload:
    """A steady stream of submits from `workers` clients, recorded as they go.

    Each worker paces itself to `rate_per_s / workers` submits a second and
    rides over failures Jepsen style: it retries the same task id (so a
    retry is idempotent), moves to another node when its node is gone,
    frozen, cut off or alone, and gives up after `give_up_s`.
    """

    cluster: Any  # NetnsCluster or LocalCluster
    recorder: Recorder
    log_path: Path
    rate_per_s: float = 20.0
    workers: int = 4
    via: Callable[[], list[int]] | None = None  # node indexes the clients may use
    task_s: tuple[float, float] = (0.0, 0.2)
    try_s: float = 2.0
    give_up_s: float = 30.0
    seed: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stopping: bool = False
    _clients: dict[tuple[int, int], AsyncClient] = field(default_factory=dict)
    _done: asyncio.Future | None = None

    def start(self) -> Workload:
        from p2pq.net.pki import ensure_identity
        import getpass
        import socket
        # Make the client certificate once, before the workers race to make it.
        name = f"client-{getpass.getuser()}-{socket.gethostname().split('.')[0]}"
        ensure_identity(self.cluster.cluster_dir, self.cluster.cluster_dir / "clients", name, "client")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._done = self._loop.create_task(self._main())
            ready.set()
            self._loop.run_until_complete(self._done)
            self._loop.close()
        self._thread = threading.Thread(target=run, name="p2pq-workload", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop submitting; in-flight submits finish (acknowledged or given up) first."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=timeout_s if timeout_s is not None else self.give_up_s + 10)

    async def _main(self) -> None:
        try:
            await asyncio.gather(*(self._worker(w) for w in range(self.workers)))
        finally:
            for client in self._clients.values():
                await client.close()

    def _nodes(self) -> list[int]:
        nodes = self.via() if self.via is not None else list(range(len(self.cluster.nodes)))
        return nodes or list(range(len(self.cluster.nodes)))

    async def _worker(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + w)
        loop = asyncio.get_running_loop()
        interval_s = self.workers / self.rate_per_s
        next_at = loop.time() + rng.uniform(0, interval_s)
        node = rng.choice(self._nodes())
        while not self._stopping:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + interval_s, loop.time())  # no burst after a stall
            node = await self._submit_one(w, rng, node)

    async def _submit_one(self, w: int, rng: random.Random, node: int) -> int:
        task_id, priority = new_task_id(), rng.randint(1, 9)
        spec = make_spec(MARK_TASK, [task_id, str(self.log_path), round(rng.uniform(*self.task_s), 3)],
                         priority=priority)
        self.recorder.invoke(task_id, priority, f"c{w}")
        deadline = time.monotonic() + self.give_up_s
        delay_s = 0.02
        while True:
            if node not in self._nodes():
                node = rng.choice(self._nodes())
            try:
                reply = await self._client(w, node).request(Submit(((task_id, spec),)),
                                                            deadline_s=self.try_s, retry=())
            except P2PQError as exc:
                self.recorder.fail(task_id, exc.code)
                if exc.code in SWITCH_NODE_ON:
                    others = [n for n in self._nodes() if n != node]
                    node = rng.choice(others) if others else node
                if time.monotonic() > deadline:
                    self.recorder.give_up(task_id)
                    return node
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 0.2)
                continue
            self.recorder.ack(task_id, reply)
            return node

    def _client(self, w: int, node: int) -> AsyncClient:
        key = (w, node)
        if key not in self._clients:
            self._clients[key] = AsyncClient(self.cluster.nodes[node].address, failover=False,
                                             cluster_dir=self.cluster.cluster_dir, timeout_s=self.try_s)
        return self._clients[key]


# -- the final table ----------------------------------------------------------------------
def record_from_view(view: dict) -> TaskRecord:
    """A TaskRecord rebuilt from a task's JSON view (p2pq.core.tasks.describe)."""
    spec = TaskSpec(view["kind"], view["target"], tuple(view["args"]), view["priority"],
                    view["retries"], view["timeout_s"])
    attempts = tuple(Attempt(a["id"], a["node"], a["started_at"], a["ended_at"], a["outcome"], a["result"])
                     for a in view["attempts"])
    return TaskRecord(view["id"], spec, (0, 0), view["submitted_at"], attempts,
                      cancelled=view["state"] == "cancelled")


def fetch_table(client: Client, page: int = 2000) -> dict[str, TaskRecord]:
    """Every task the leader holds, as TaskRecords; ValueError if a view disagrees with its record."""
    table: dict[str, TaskRecord] = {}
    offset = 0
    while True:
        listing = client.list(limit=page, offset=offset)
        for view in listing["tasks"]:
            record = record_from_view(view)
            if record.state.value != view["state"]:
                raise ValueError(f"task {view['id']}: the leader says {view['state']}, "
                                 f"its attempts say {record.state.value}")
            table[record.task_id] = record
        offset += page
        if offset >= listing["total"]:
            return table


def wait_drained(client: Client, recorder: Recorder, timeout_s: float = 120.0) -> dict[str, TaskRecord]:
    """Wait until nothing is queued or running and every acknowledged task is finished; the table."""
    def drained():
        counts = client.stats()["counts"]
        if counts.get("queued", 0) or counts.get("running", 0):
            return None
        table = fetch_table(client)
        missing = [t for t in recorder.acked_ids() if t not in table or not table[t].state.terminal]
        return None if missing else table
    return wait_for(drained, timeout_s, "the queue to drain and every acknowledged task to finish",
                    interval_s=0.5)


def side_effect_runs(log_path: Path) -> collections.Counter:
    """(task, node) -> runs, from the lines `mark` appended."""
    runs: collections.Counter = collections.Counter()
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                runs[(parts[0], parts[1])] += 1
    return runs


# -- judging ------------------------------------------------------------------------------
@dataclass
class Verdict:
    """The checker's report on a real run, plus what only a real run can show."""

    report: Report
    runs: int = 0                     # runs seen by their side effect
    invisible_runs: list[str] = field(default_factory=list)  # runs no attempt accounts for (G2)
    notes: list[tuple[float, str, str, dict]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = list(self.report.problems)
        if self.invisible_runs:
            out.append(f"{len(self.invisible_runs)} run(s) not recorded as an attempt: "
                       f"{', '.join(self.invisible_runs[:5])}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(recorder: Recorder, final: dict[str, TaskRecord], notes: Iterable[tuple[float, str, str, dict]],
          log_path: Path, end_at: float | None = None) -> Verdict:
    """Fill the history from the final table and the nodes' notes, then check it."""
    history = recorder.history
    end_at = end_at or time.time()
    for record in final.values():
        for a in record.attempts:
            history.execution_start(record.task_id, a.attempt_id, a.node, a.started_at, a.started_at)
            if a.ended_at is not None:
                history.execution_end(a.attempt_id, a.ended_at, a.outcome)
    notes = list(notes)
    _record_leaderships(history, notes, recorder.kills, end_at)
    report = check(history, final)
    verdict = Verdict(report, notes=notes)
    runs = side_effect_runs(log_path)
    verdict.runs = sum(runs.values())
    for (task_id, node), n in sorted(runs.items()):
        record = final.get(task_id)
        attempts = sum(1 for a in record.attempts if a.node == node) if record else 0
        if n > attempts:
            verdict.invisible_runs.append(f"{task_id}@{node} ran {n}x, {attempts} attempt(s)")
    return verdict


def _record_leaderships(history, notes, kills, end_at: float) -> None:
    """leader_elected notes into the history; each leadership ends at a step-down, a kill or the end."""
    leadership_cls = getattr(sim_history, "Leadership", None)
    open_: dict[str, Any] = {}

    def close(node: str, at: float) -> None:
        lead = open_.pop(node, None)
        if lead is not None:
            lead.end_s = at
    events = [(at, node, kind, detail) for at, node, kind, detail in notes
              if kind in ("leader_elected", "stepped_down")]
    events += [(at, node, "killed", {}) for at, node in kills]
    for at, node, kind, detail in sorted(events, key=lambda e: e[0]):
        if kind == "leader_elected":
            history.note(at, node, kind, {"term": detail["term"]})
            close(node, at)
            if leadership_cls is not None:
                lead = leadership_cls(node, detail["term"], at)
                history.leaderships.append(lead)
                open_[node] = lead
        else:
            close(node, at)
    for node in list(open_):
        close(node, end_at)


__all__ = ["mark", "Recorder", "Workload", "record_from_view", "fetch_table", "wait_drained",
           "side_effect_runs", "judge", "Verdict"]


def unavailable_by_cause(history: Any, after_s: float | None = None) -> dict[str, tuple[float, int]]:
    """Unavailable seconds and windows, each put down to the last fault event before it
    began (a strike such as kill-9 or halves, or the heal, restart or resume after one).

    Windows are the checker's: unions of submits that waited longer than
    UNAVAILABLE_AFTER_S. A submit invoked shortly before a fault waits because of
    it, so a window belongs to the last event no later than its start + that wait.
    """
    from p2pq.sim.checker import UNAVAILABLE_AFTER_S, union
    after_s = UNAVAILABLE_AFTER_S if after_s is None else after_s
    waits = []
    for op in history.ops.values():
        end = op.acked_at if op.acked_at is not None else op.gave_up_at
        if end is not None and end - op.invoked_at > after_s:
            waits.append((op.invoked_at, end))
    events = sorted((at, kind) for at, kind, _ in history.faults)
    out: dict[str, list] = {}
    for start, end in union(waits):
        cause = next((kind for at, kind in reversed(events) if at <= start + after_s), "none")
        seconds, windows = out.setdefault(cause, [0.0, 0])
        out[cause] = [seconds + end - start, windows + 1]
    return {cause: (round(seconds, 1), windows) for cause, (seconds, windows) in
            sorted(out.items(), key=lambda kv: -kv[1][0])}
