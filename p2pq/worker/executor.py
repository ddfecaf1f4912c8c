"""Executor: runs task specs in worker processes, never on the event loop.

Theory of operation
- A slot is the unit of concurrency: at most `slots` tasks run at once, one
  per slot, whatever their kind. run() waits first-come first-served for a
  free slot; the timeout starts when the task gets one.
- builtin and python tasks go to the slot's long-lived child process
  (_child.py) over pipes. Starting Python costs tens of milliseconds, so a
  child serves task after task; only a timeout, a cancel or a crash replaces
  it: its process group gets SIGKILL and a fresh child starts in the
  background while run() reports.
- shell tasks run in a process group of their own (shell.py), so a timeout
  or cancel kills the command and everything it started.
- Limits (confine.py): each slot's child and its shell tasks run in scopes
  of their own (a cgroup v2 group where one can be made, else a P2PQ_TASK
  environment marker), capped at `task_memory_bytes` by memory.max or by
  RLIMIT_DATA. A task's processes end with it: the child (after each task)
  and the shell launcher (after its command) kill everything below them;
  after a kill of the child or the launcher, the node kills what is left in
  the scope, setsid or not, and reaps it. A task stopped by the limit
  fails with "memory limit (N MiB) exceeded".
- Each run is one asyncio Task (the "job") that the Executor owns. Timeout
  and cancel record a reason, then cancel the job; the job's cleanup kills
  the process; run() turns that CancelledError into an Outcome carrying the
  reason. If run() itself is cancelled (no reason recorded), the same kill
  happens and the cancellation propagates.
- run() never raises for a task's failure: bad specs, unknown tasks,
  exceptions, crashes and non-JSON results all become status "failed" with
  a one-line error, so a user's mistake can never take the node down (G5).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Callable

from p2pq.core.schema import MAX_VALUE_DEPTH, value_depth
from p2pq.worker._child import HEADER, encode_frame, one_line
from p2pq.worker._launch import set_subreaper
from p2pq.worker.confine import Confinement, Scope, memory_limit_error, wait_gone
from p2pq.worker.outcome import STATUSES, Outcome, exit_text
from p2pq.worker.shell import Tail, run_shell, tail_text
from p2pq.worker.spec import Call, Shell, SpecError, check_timeout, parse_spec

__all__ = ["Executor", "Outcome", "STATUSES"]

log = logging.getLogger(__name__)

# The child learns the parent's sys.path before importing anything, so
# "pkg.mod:fn" resolves in the child exactly as it would in the node
# (what multiprocessing's spawn does too).
_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from p2pq.worker._child import main; main()"
)
_START_TIMEOUT_S = 60.0


# --- one worker child -------------------------------------------------------


class _ChildDied(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(f"worker process died ({exit_text(returncode)})")
        self.returncode = returncode


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Cuts the child's stdout into frames and hands each to the waiting call.

    A bare protocol rather than StreamReader: the reply wakes the caller
    straight from data_received, with no coroutine per read (per-task cost
    on the event loop is the figure that bounds throughput).
    """

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._reply: asyncio.Future[Any] | None = None
        self.eof = False
        self.exited: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def expect_reply(self) -> asyncio.Future[Any]:
        self._reply = asyncio.get_running_loop().create_future()
        if self.eof:
            self._reply.set_exception(EOFError())
        return self._reply

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + size
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[HEADER.size:end])
            del self._buffer[:end]
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        reply, self._reply = self._reply, None
        if reply is None or reply.done():
            return  # nobody asked (or the caller gave up): drop it
        try:
            reply.set_result(pickle.loads(body))
        except Exception as exc:  # noqa: BLE001 (a garbled frame, reported as such)
            reply.set_result(("undecodable", one_line(exc)))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._lost()

    def process_exited(self) -> None:
        self._lost()
        # Release the pipes here, whoever (if anyone) is still waiting on us.
        if self._transport is not None:
            self._transport.close()
        if not self.exited.done():
            self.exited.set_result(None)

    def _lost(self) -> None:
        self.eof = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(EOFError())


class _Child:
    """One long-lived worker process and the pipes to it."""

    def __init__(self, transport: asyncio.SubprocessTransport,
                 protocol: _ChildProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._stdin = transport.get_pipe_transport(0)
        self.pid = transport.get_pid()
        self.oom_kills_before = 0  # its scope's OOM kills when it started (memory.events)

    @classmethod
    async def spawn(cls, scope: Scope, output_cap_bytes: int, python_path: tuple[str, ...] = ()) -> _Child:
        """Start a child in `scope` and wait for its "ready" frame; `python_path` comes first on its path."""
        path = [*python_path, *(entry or os.getcwd() for entry in sys.path)]
        config = {"data_bytes": scope.rlimit_bytes, "output_cap_bytes": output_cap_bytes}
        transport, protocol = await asyncio.get_running_loop().subprocess_exec(
            _ChildProtocol, sys.executable, "-c", _BOOT, json.dumps(path), json.dumps(config),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **scope.env},
            start_new_session=True,  # a killpg takes the task's own children too
        )
        child = cls(transport, protocol)
        try:
            scope.join(child.pid)  # before its first task, so before it can fork
            hello = await asyncio.wait_for(
                child._reply(protocol.expect_reply()), _START_TIMEOUT_S)
        except _ChildDied as exc:
            raise RuntimeError(f"worker process exited during start-up "
                               f"({exit_text(exc.returncode)})") from None
        except BaseException:  # timeout or cancellation: leave no process behind
            child.kill()
            await child.wait_closed()
            raise
        if not (isinstance(hello, tuple) and hello[:1] == ("ready",)):
            child.kill()
            await child.wait_closed()
            raise RuntimeError(f"worker process sent {hello!r:.80} instead of 'ready'")
        return child

    async def call(self, frame: bytes) -> Any:
        """Send one request frame and return the reply; _ChildDied on EOF."""
        reply = self._protocol.expect_reply()
        if not self._stdin.is_closing():  # if it is, the child is gone: EOF follows
            self._stdin.write(frame)
        return await self._reply(reply)

    async def _reply(self, reply: asyncio.Future[Any]) -> Any:
        try:
            return await reply
        except EOFError:
            raise _ChildDied(await self.wait_closed()) from None

    @property
    def alive(self) -> bool:
        return not self._protocol.eof

    def kill(self) -> None:
        """SIGKILL the child's process group (the child leads it)."""
        if self._transport.get_returncode() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def wait_closed(self) -> int:
        """Wait for the child to exit (its pipes close with it); its return code."""
        await asyncio.shield(self._protocol.exited)
        returncode = self._transport.get_returncode()
        assert returncode is not None
        return returncode


class _Slot:
    """One unit of concurrency, and the child that serves it."""

    def __init__(self, index: int, output_cap_bytes: int, python_path: tuple[str, ...] = ()) -> None:
        self.index = index
        self.output_cap_bytes = output_cap_bytes  # of each stream of a Python or built-in task
        self.python_path = python_path
        self.py_scope = self.sh_scope = Scope("", None, None)  # until confine()
        self._leftovers: list[int] = []  # killed with the last child, not yet reaped
        self._child: _Child | None = None
        self._starting: asyncio.Task[_Child] | None = None
        self._dying: _Child | None = None  # killed, not yet reaped

    def confine(self, confinement: Confinement) -> None:
        """Give the slot its scopes (once the mechanism is chosen, before any child)."""
        self.py_scope = confinement.scope(f"slot{self.index}-py")
        self.sh_scope = confinement.scope(f"slot{self.index}-sh")

    def prepare(self) -> None:
        """Start a child in the background unless one is up or starting."""
        if self._child is None and self._starting is None:
            task = asyncio.get_running_loop().create_task(
                self._start(), name=f"p2pq-worker-slot-{self.index}-start")
            task.add_done_callback(self._started)
            self._starting = task

    async def _start(self) -> _Child:
        if self._dying is not None:
            await self._dying.wait_closed()  # one process per slot, even briefly
            self._dying = None
        await self._reap_leftovers()
        child = await _Child.spawn(self.py_scope, self.output_cap_bytes, self.python_path)
        child.oom_kills_before = self.py_scope.oom_kills()  # so a death is told from an OOM kill
        return child

    async def _reap_leftovers(self) -> None:
        pids, self._leftovers = self._leftovers, []
        await wait_gone(pids)

    def _started(self, task: asyncio.Task[_Child]) -> None:
        if self._starting is task:
            self._starting = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("worker slot %d: %s", self.index, task.exception())
        else:
            self._child = task.result()

    async def child(self) -> _Child:
        """The ready child, starting one if needed; raises if it cannot start."""
        if self._child is not None and not self._child.alive:
            self.replace()  # it died while idle (OOM killer?): not this task's fault
        if self._child is None:
            self.prepare()
            assert self._starting is not None
            # shield: a cancelled run must not abort a start the next run needs.
            self._child = await asyncio.shield(self._starting)
        return self._child

    def replace(self) -> None:
        """Kill the child (a task overran, was cancelled, or crashed it) and
        start a fresh one in the background."""
        old, self._child = self._child, None
        if old is not None:
            old.kill()
            self._dying = old
            # What the task started outside the child's group (setsid) is in its scope.
            self._leftovers += self.py_scope.kill_all(root=old.pid)
        self.prepare()

    async def close(self) -> None:
        """Stop any start in progress, kill the child, wait until it is gone."""
        if self._starting is not None:
            self._starting.cancel()  # spawn() kills and reaps what it started
            await asyncio.wait([self._starting])
        for child in (self._dying, self._child):
            if child is not None:
                child.kill()
                self._leftovers += self.py_scope.kill_all(root=child.pid)
                await child.wait_closed()
        self._dying = self._child = None
        await self._reap_leftovers()


class _SlotPool:
    """Free slots, handed out to waiters by task priority (lower first), ties first-come first-served.

    A node holds the tasks the leader prefetched to it; an urgent one that
    arrives later must not wait behind them (G4 at the node).
    """

    def __init__(self, slots: list[_Slot]) -> None:
        self._idle: collections.deque[_Slot] = collections.deque(slots)
        self._waiters: list[tuple[int, int, asyncio.Future[_Slot]]] = []  # a heap
        self._arrivals = 0

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self, priority: int = 0) -> _Slot:
        # Invariant: a slot is idle only while nobody waits.
        if self._idle:
            return self._idle.popleft()
        waiter = asyncio.get_running_loop().create_future()
        self._arrivals += 1
        heapq.heappush(self._waiters, (priority, self._arrivals, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            # else: its heap entry is skipped when popped (a cancelled future is done)
            raise

    def release(self, slot: _Slot) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._idle.append(slot)


# --- the executor ------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Run:
    run_id: str
    timeout_s: float | None
    priority: int = 0  # waiting for a slot: lower first
    job: asyncio.Task[Outcome] | None = None
    started_s: float | None = None
    reason: str | None = None  # "timeout" | "cancelled", once aborted
    detail: str = ""
    timer: asyncio.TimerHandle | None = None
    stdout: Tail | None = None
    stderr: Tail | None = None

    def elapsed_s(self) -> float:
        return 0.0 if self.started_s is None else time.monotonic() - self.started_s

    def aborted(self) -> Outcome:
        """The outcome of a run stopped by timeout or cancel."""
        assert self.reason is not None
        return Outcome(
            self.reason, error=self.detail,
            stdout=self.stdout.text() if self.stdout else "",
            stderr=self.stderr.text() if self.stderr else "",
            duration_s=self.elapsed_s(),
        )


class Executor:
    """Runs tasks in `slots` worker processes; see the module docstring."""

    def __init__(self, slots: int, *, output_cap_bytes: int = 64 * 1024,
                 max_result_bytes: int = 1024 * 1024, task_memory_bytes: int | None = None,
                 cgroups: bool = True, python_path: tuple[str, ...] = ()) -> None:
        """`task_memory_bytes`: each task's memory limit (None: none); `cgroups=False`
        forces the fallback (marker and RLIMIT_DATA) where cgroup v2 would do;
        `python_path`: directories Python tasks import from, before the node's own path."""
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive integer, got {slots!r}")
        if output_cap_bytes < 1 or max_result_bytes < 1:
            raise ValueError("output_cap_bytes and max_result_bytes must be positive")
        if task_memory_bytes is not None and task_memory_bytes < 1:
            raise ValueError(f"task_memory_bytes must be positive or None, got {task_memory_bytes!r}")
        self.confinement = Confinement(task_memory_bytes, cgroups=cgroups)
        paths = tuple(os.path.abspath(p) for p in python_path)
        self._slots = [_Slot(i, output_cap_bytes, paths) for i in range(slots)]
        self._pool = _SlotPool(self._slots)
        self._reapers: set[asyncio.Task[None]] = set()
        self._output_cap_bytes = output_cap_bytes
        self._max_result_bytes = max_result_bytes
        self._runs: dict[str, _Run] = {}
        self._state = "new"  # -> "started" -> "closed"

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def free_slots(self) -> int:
        return self._pool.idle

    @property
    def busy(self) -> int:
        """How many slots are running a task right now."""
        return len(self._slots) - self._pool.idle

    async def start(self) -> None:
        """Start every slot's child; raises if Python cannot be started."""
        if self._state != "new":
            raise RuntimeError(f"executor already {self._state}")
        self._state = "started"
        # Orphans of a killed task come to us, not to an init that may never reap them.
        subreaper = set_subreaper()
        self.confinement.setup()
        log.info("task limits: %s%s", self.confinement.describe(),
                 "" if subreaper else " (not a child subreaper: orphans go to init)")
        for slot in self._slots:
            slot.confine(self.confinement)
        await asyncio.gather(*(slot.child() for slot in self._slots))

    async def run(self, run_id: str, spec: dict, timeout_s: float | None, priority: int = 0) -> Outcome:
        """Run one task to its end. Never raises for the task's failures."""
        run = self._begin(run_id, spec, timeout_s, priority)
        if isinstance(run, Outcome):
            return run
        try:
            return await run.job
        except asyncio.CancelledError:
            if run.reason is None or _being_cancelled():
                raise
            return run.aborted()

    def submit(self, run_id: str, spec: dict, timeout_s: float | None,
               on_done: Callable[[Outcome], None], priority: int = 0) -> None:
        """Start one task; `on_done(outcome)` is called (on the loop) when it ends.

        run() without a coroutine of the caller's to await it: the node
        starts every task this way, one asyncio task per run instead of two.
        """
        run = self._begin(run_id, spec, timeout_s, priority)
        if isinstance(run, Outcome):
            asyncio.get_running_loop().call_soon(on_done, run)
        else:
            assert run.job is not None
            run.job.add_done_callback(lambda job: on_done(_ended(run, job)))

    def _begin(self, run_id: str, spec: dict, timeout_s: float | None, priority: int = 0) -> _Run | Outcome:
        """Check the spec and start the run's job; an Outcome instead if it cannot start."""
        if self._state == "new":
            raise RuntimeError("Executor.run() before start()")
        if self._state == "closed":
            return Outcome("cancelled", error="executor closed")
        try:
            task = parse_spec(spec)
            timeout_s = check_timeout(timeout_s)
        except SpecError as exc:
            return Outcome("failed", error=f"invalid task spec: {exc}")
        except (LookupError, TypeError) as exc:  # UnknownTask, unimportable task
            return Outcome("failed", error=one_line(exc))
        if run_id in self._runs:
            return Outcome("failed", error=f"run {run_id!r} is already running here")
        run = self._runs[run_id] = _Run(run_id, timeout_s, priority)
        run.job = asyncio.get_running_loop().create_task(self._job(run, task))
        run.job.add_done_callback(lambda _job: self._runs.pop(run_id, None))
        return run

    def cancel(self, run_id: str) -> bool:
        """Kill a waiting or running task; its run() returns "cancelled"."""
        run = self._runs.get(run_id)
        return run is not None and self._abort(run, "cancelled", "cancelled")

    async def close(self) -> None:
        """Cancel every run, kill every child, and wait until they are gone."""
        if self._state == "closed":
            return
        self._state = "closed"
        runs = list(self._runs.values())
        for run in runs:
            self._abort(run, "cancelled", "executor closed")
        await asyncio.gather(*(run.job for run in runs if run.job), return_exceptions=True)
        await asyncio.gather(*(slot.close() for slot in self._slots), return_exceptions=True)
        await asyncio.gather(*self._reapers, return_exceptions=True)
        self.confinement.close()

    def _abort(self, run: _Run, reason: str, detail: str) -> bool:
        if run.reason is not None or run.job is None or run.job.done():
            return False
        run.reason, run.detail = reason, detail
        run.job.cancel()  # the job's cleanup kills the process
        return True

    async def _job(self, run: _Run, task: Call | Shell) -> Outcome:
        slot = await self._pool.acquire(run.priority)
        try:
            run.started_s = time.monotonic()
            if run.timeout_s is not None:
                run.timer = asyncio.get_running_loop().call_later(
                    run.timeout_s, self._abort, run, "timeout",
                    f"timed out after {run.timeout_s:g} s")
            if isinstance(task, Shell):
                run.stdout = Tail(self._output_cap_bytes)
                run.stderr = Tail(self._output_cap_bytes)
                oom_kills = slot.sh_scope.oom_kills()
                outcome = await run_shell(task, run.stdout, run.stderr, slot.sh_scope, self._reap)
                if outcome.status != "succeeded" and slot.sh_scope.oom_kills() > oom_kills:
                    outcome = dataclasses.replace(outcome, error=self._memory_error())
            else:
                outcome = await self._call(slot, task)
        finally:
            if run.timer is not None:
                run.timer.cancel()
            self._pool.release(slot)
        return dataclasses.replace(outcome, duration_s=run.elapsed_s())

    async def _call(self, slot: _Slot, call: Call) -> Outcome:
        """Run a builtin/python task in the slot's child."""
        try:
            frame = encode_frame((call.target, call.args, call.kwargs, call.path))
        except Exception as exc:  # noqa: BLE001 (any pickling failure)
            return Outcome("failed", error=f"arguments cannot be sent: {one_line(exc)}")
        try:
            child = await slot.child()
        except Exception as exc:  # noqa: BLE001
            return Outcome("failed", error=f"worker process failed to start: {exc}")
        try:
            reply = await child.call(frame)
        except _ChildDied as exc:
            slot.replace()
            if slot.py_scope.oom_kills() > child.oom_kills_before:  # memory.max: the kernel killed it
                return Outcome("failed", error=self._memory_error())
            return Outcome("failed", error=str(exc))
        except BaseException:
            slot.replace()  # timeout/cancel: only a kill stops a running task
            raise
        return self._reply_outcome(slot, reply)

    def _reply_outcome(self, slot: _Slot, reply: Any) -> Outcome:
        """A child's reply as an outcome; what the task printed comes with it (the child's tails)."""
        match reply:
            case ("ok", str() as text, str() as out, str() as err) if len(text) > self._max_result_bytes:
                return Outcome("failed", error=f"result too large: {len(text)} bytes "
                               f"of JSON (limit {self._max_result_bytes})", stdout=out, stderr=err)
            case ("ok", str() as text, str() as out, str() as err):
                value = json.loads(text)
                if value_depth(value) > MAX_VALUE_DEPTH:  # it could not be replicated (G5)
                    return Outcome("failed", error=f"result nests deeper than {MAX_VALUE_DEPTH} levels",
                                   stdout=out, stderr=err)
                return Outcome("succeeded", value=value, stdout=out, stderr=err)
            case ("error", str() as error, str() as out, str() as err) if (
                    error.partition(":")[0] == "MemoryError" and self.confinement.memory_bytes):
                slot.replace()  # its heap may stay large: start the next task afresh
                return Outcome("failed", error=self._memory_error(), stdout=out,
                               stderr=tail_text(err, self._output_cap_bytes))
            case ("error", str() as error, str() as out, str() as err):
                return Outcome("failed", error=error, stdout=out, stderr=tail_text(err, self._output_cap_bytes))
        slot.replace()  # a garbled reply: trust nothing more from this child
        return Outcome("failed", error=f"worker protocol error: got {reply!r:.80}")

    def _memory_error(self) -> str:
        assert self.confinement.memory_bytes is not None
        return memory_limit_error(self.confinement.memory_bytes)

    def _reap(self, pids: list[int]) -> None:
        """Reap killed task processes in the background (the executor owns the task)."""
        if pids:
            task = asyncio.get_running_loop().create_task(wait_gone(pids), name="p2pq-worker-reap")
            self._reapers.add(task)
            task.add_done_callback(self._reapers.discard)


def _ended(run: _Run, job: asyncio.Task[Outcome]) -> Outcome:
    """How a submitted run's job ended, as an Outcome (never raises)."""
    if job.cancelled():
        return run.aborted() if run.reason is not None else Outcome("cancelled", error="executor closed")
    exc = job.exception()
    if exc is not None:  # a bug in the executor: the task fails, the node goes on (G5)
        log.error("run %s failed in the executor", run.run_id, exc_info=exc)
        return Outcome("failed", error=f"executor error: {one_line(exc)}")
    return job.result()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
