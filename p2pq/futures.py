"""Futures over the cluster, and ``p2pq.Executor``: the ``concurrent.futures`` API, on the lab.

>>> import p2pq
>>> with p2pq.Executor() as ex:                       # was: ProcessPoolExecutor()
...     list(ex.map(mymodule.simulate, range(100)))   # runs on every node, results in order

A ``TaskFuture`` is a real ``concurrent.futures.Future``: ``p2pq.wait`` and
``p2pq.as_completed`` are the standard library's own, and take both kinds.
It is returned at once; its submit is acknowledged in the background (the
client sends the submits made within a millisecond as one request), and
its result is pushed by the node the client talks to when the task ends,
through any failover of the leader or of that node.

What runs is named, not pickled: a function goes by its import path
(``module:name``), so it must be defined at the top level of a module that
every node can import. A function of the script being run (``__main__``) is
imported by the nodes from the script's own file: its directory must be
readable there too (a shared home directory, or the nodes started with
``--pythonpath``), and the script must guard its own work with ``if
__name__ == "__main__":``, as it must for a ``ProcessPoolExecutor``.
"""

from __future__ import annotations

import builtins
import collections
import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from p2pq.client import Client, InvalidRequest, P2PQError, make_spec
from p2pq.core.tasks import TaskSpec

__all__ = ["TaskFuture", "TaskFailed", "Executor", "Shell", "shell", "wait", "as_completed",
           "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"]

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class TaskFailed(P2PQError):
    """A task that ran and failed (or timed out): its one line, and the traceback from where it ran.

    A task that raised a built-in exception (ValueError, ZeroDivisionError,
    ...) raises that type from ``result()`` instead, with a TaskFailed as its
    ``__cause__``, so ``except ValueError`` works as it does with a local pool.
    """

    def __init__(self, task_id: str, line: str, remote_traceback: str = "", code: str = "failed") -> None:
        super().__init__(code, f"task {task_id} {line}" if code == "timeout" else line)
        self.task_id = task_id
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n\n{self.remote_traceback.rstrip()}" if self.remote_traceback else text


@dataclass(frozen=True, slots=True)
class Shell:
    """A command to run as a shell task (no shell: argv as given); see `shell`."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: dict[str, str] | None = None


def shell(argv: str | Sequence[Any], *, cwd: str | None = None, env: dict[str, str] | None = None) -> Shell:
    """A shell command for Executor.submit and map: the call's arguments are appended to `argv`.

    >>> ex.submit(p2pq.shell(["python3", "sim.py", "--seed"]), 7)  # runs: python3 sim.py --seed 7

    Its future's result is a ``subprocess.CompletedProcess`` (captured output
    as text); a non-zero exit raises ``subprocess.CalledProcessError``.
    """
    argv = [argv] if isinstance(argv, str) else list(argv)
    if not argv or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in argv):
        raise InvalidRequest("shell() takes a non-empty list of strings (and numbers): the command and "
                             "its first arguments")
    return Shell(tuple(str(a) for a in argv), cwd, dict(env) if env else None)


_HELD = threading.Condition()  # a future's submit was answered (TaskFuture.acknowledged)


class TaskFuture(concurrent.futures.Future):
    """The future of one task on the cluster; `id` is its task id, known at once."""

    def __init__(self, client: Client, task_id: str, spec: TaskSpec) -> None:
        super().__init__()
        self.id = task_id
        self.spec = spec
        self._client = client
        self._held = False  # the cluster holds the task (or refused it); under _HELD
        self._ack = None  # the submit's asyncio future, on the client's loop thread

    def __repr__(self) -> str:
        return f"<TaskFuture {self.id} {self.spec.target!r} {self._state.lower()}>"

    def acknowledged(self, timeout: float | None = None) -> bool:
        """Wait until the cluster holds the task (or refused it); False if `timeout` passed first."""
        with _HELD:  # one condition for every future (its own would wake result() waiters early)
            return _HELD.wait_for(lambda: self._held or self._state != "PENDING", timeout)

    def status(self) -> dict:
        """The task's view from the leader now (state, attempts, result): one round trip."""
        self.acknowledged()
        if self.done() and not self.cancelled() and isinstance(self.exception(), P2PQError) and \
                not isinstance(self.exception(), TaskFailed):
            raise self.exception()  # the submit itself was refused: there is no task to ask about
        return self._client.status(self.id)

    def cancel(self) -> bool:
        """Cancel the task if it has not started: True if it is cancelled (now, or already).

        Like a local pool, a task already running is not stopped and False is
        returned (``Client.cancel`` stops running tasks too).
        """
        if self.done():
            return self.cancelled()
        self.acknowledged()
        if self.done():
            return self.cancelled()
        try:
            reply = self._client.cancel(self.id, queued_only=True)
        except P2PQError:
            return False
        if reply.get("state") != "cancelled":
            return False
        self._cancelled()
        return self.cancelled()

    def _cancelled(self) -> None:
        """Cancelled, and waiters told (as an executor's worker does with set_running_or_notify_cancel:
        concurrent.futures.wait and as_completed count a cancelled future only once notified)."""
        with self._condition:  # the user's cancel() and the node's push may both get here
            if concurrent.futures.Future.cancel(self) and self._state == "CANCELLED":
                self.set_running_or_notify_cancel()

    # -- what the client's loop thread calls ---------------------------------------------
    def _held_now(self) -> None:
        with _HELD:
            self._held = True
            _HELD.notify_all()

    def _refused(self, exc: BaseException) -> None:
        self._held_now()
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            self.set_exception(exc)

    def _ended(self, view: dict) -> None:
        """The task's final view, pushed by the node: the future's result, exception or cancel."""
        if self.done():
            return
        state = view.get("state")
        if state == "cancelled":
            self._cancelled()
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            try:
                value = _value_of(self, view)
            except BaseException as exc:  # noqa: BLE001 - it is the task's exception, for result()
                self.set_exception(exc)
            else:
                self.set_result(value)


def _value_of(future: TaskFuture, view: dict) -> Any:
    """The task's return value from its final view; raises what the task's failure should raise."""
    from p2pq.worker.outcome import Outcome
    try:
        outcome = Outcome.from_wire(view.get("result"))
    except ValueError:
        raise TaskFailed(future.id, f"ended {view.get('state')} with no result") from None
    spec = future.spec
    if spec.kind == "shell":
        argv = [spec.target, *map(str, spec.args)]
        if outcome.status == "succeeded":
            return subprocess.CompletedProcess(argv, outcome.exit_code or 0, outcome.stdout, outcome.stderr)
        if outcome.status == "failed" and outcome.exit_code is not None:
            raise subprocess.CalledProcessError(outcome.exit_code, argv, outcome.stdout, outcome.stderr)
    elif outcome.status == "succeeded":
        return outcome.value
    line = outcome.error or f"task ended {outcome.status}"
    if outcome.status == "timeout":
        raise TaskFailed(future.id, line, code="timeout")
    trace = outcome.stderr[outcome.stderr.find("Traceback (most recent call last)"):] \
        if "Traceback (most recent call last)" in outcome.stderr else ""
    failed = TaskFailed(future.id, line, trace)
    name, _, message = line.partition(": ")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, OSError):
        try:
            same = cls(message)
        except Exception:  # a built-in type that wants other arguments: the TaskFailed will do
            raise failed from None
        raise same from failed
    raise failed


def _target_of(fn: Any) -> tuple[str, str | None, dict]:
    """What make_spec needs to run `fn`: (target, kind, options); a clear InvalidRequest if it cannot."""
    if isinstance(fn, Shell):
        options: dict = {}
        if fn.cwd:
            options["cwd"] = fn.cwd
        if fn.env:
            options["env"] = fn.env
        return fn.argv[0], "shell", {"prefix": fn.argv[1:], **options}
    if isinstance(fn, str):
        return fn, None, {}  # a built-in name, or "pkg.mod:fn"
    if not callable(fn):
        raise InvalidRequest(f"cannot run {fn!r}: expected a function, a built-in task's name or p2pq.shell([...])")
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname \
            or not _DOTTED.fullmatch(qualname):
        raise InvalidRequest(f"cannot run {fn!r} on the cluster: a task is sent by its import path "
                             "(module:name), so it must be a function defined at the top level of a "
                             "module, not a lambda, a nested function or a bound method")
    options = {}
    if module == "__main__":
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        stem = os.path.splitext(os.path.basename(script))[0] if script else ""
        if not script or not _DOTTED.fullmatch(stem):
            raise InvalidRequest(f"cannot run {qualname!r} on the cluster: it is defined in an interactive "
                                 "session; define it in a module file that the nodes can import")
        module, options["path"] = stem, os.path.dirname(os.path.abspath(script))
    return f"{module}:{qualname}", "python", options


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose workers are the cluster's nodes.

    `node` and `cluster_dir`: as for Client (None: $P2PQ_NODE or the local
    node); or pass a `client` to share one. `submit_options` go with every task: priority,
    retries, timeout_s, and cwd/env for shell commands.
    """

    def __init__(self, node: str | Sequence[str] | None = None, *, client: Client | None = None,
                 cluster_dir: str | os.PathLike | None = None, **submit_options: Any) -> None:
        unknown = set(submit_options) - {"priority", "retries", "timeout_s", "cwd", "env"}
        if unknown:
            raise TypeError(f"Executor() got unexpected options: {', '.join(sorted(unknown))} "
                            "(expected priority, retries, timeout_s, cwd, env)")
        make_spec("noop", **submit_options)  # checked now, not at the first submit
        self._own_client = client is None
        self._client = client if client is not None else Client(node, cluster_dir=cluster_dir)
        self._options = submit_options
        self._futures: set[TaskFuture] = set()
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run fn(*args, **kwargs) on the cluster; the future at once (arguments must be JSON values)."""
        return self._submit(_target_of(fn), args, kwargs)

    def _submit(self, how: tuple[str, str | None, dict], args: tuple, kwargs: dict) -> TaskFuture:
        target, kind, extra = how
        options = dict(self._options)
        if kind == "shell":
            if kwargs:
                raise InvalidRequest("a shell command takes positional arguments only")
            extra = dict(extra)
            args = (*extra.pop("prefix"), *args)
            options.update(extra)
        else:
            options.update(extra)
            options.pop("cwd", None), options.pop("env", None)
        spec = make_spec(target, args, kind=kind, kwargs=kwargs or None, **options)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self._client.submit_future_spec(spec)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: TaskFuture) -> None:
        with self._lock:
            self._futures.discard(future)

    def map(self, fn: Any, *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1,
            buffersize: int | None = None) -> Iterator[Any]:
        """fn over the iterables' items, as ``concurrent.futures``: results in order, as they come.

        Every call is submitted when map is called (in batches, not one round
        trip each), unless `buffersize` bounds how many are submitted ahead of
        the results read. `timeout` counts from the call; a result that is
        late raises TimeoutError and cancels the calls not yet run. `chunksize`
        is accepted for compatibility and ignored: calls are already batched.
        """
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError("buffersize must be a positive integer or None")
        how = _target_of(fn)
        end = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables)
        first = calls if buffersize is None else _take(calls, buffersize)
        futures: collections.deque[TaskFuture] = collections.deque(self._submit(how, args, {}) for args in first)
        return self._results(futures, calls if buffersize is not None else iter(()), how, end)

    def _results(self, futures: collections.deque, calls: Iterator, how: tuple, end: float | None):
        try:
            while futures:
                future = futures.popleft()
                for args in _take(calls, 1):  # one more in for each one out (buffersize)
                    futures.append(self._submit(how, args, {}))
                yield future.result(None if end is None else max(0.0, end - time.monotonic()))
        finally:
            self._client.cancel_queued([f for f in futures if not f.done()])

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new submits; `cancel_futures` cancels the tasks not yet started; `wait` waits for the rest."""
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures:
            self._client.cancel_queued(pending)
        if not self._own_client:
            if wait:
                concurrent.futures.wait(pending)
            return
        if wait or not pending:
            concurrent.futures.wait(pending)
            self._client.close()
        else:  # the futures still resolve: the client closes after the last of them
            remaining = [len(pending)]
            lock = threading.Lock()

            def one_done(_: TaskFuture) -> None:
                with lock:
                    remaining[0] -= 1
                    last = remaining[0] == 0
                if last:
                    threading.Thread(target=self._client.close, name="p2pq-executor-close").start()
            for future in pending:
                future.add_done_callback(one_done)


def _take(iterator: Iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out
