"""The Python API to a p2pq cluster; the `p2pq` command line uses it too.

>>> from p2pq import Client
>>> with Client() as c:                       # the node on this machine
...     task_id = c.submit("fibonacci", 30, priority=1)
...     c.result(task_id, wait=True)["result"]["value"]

Any node will do: a node that does not lead forwards to the leader. Submits
carry a client-made task id, so when a leader dies mid-request the client
retries with the same id and the task exists once (G1 without duplicates).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import getpass
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from p2pq.core import schema
from p2pq.core.errors import RETRYABLE, ErrorCode
from p2pq.core.messages import Cancel, Query, Submit, Wait, Watch, decode_client_request, spec_to_wire, to_wire
from p2pq.core.tasks import TaskSpec

if TYPE_CHECKING:
    from p2pq.futures import TaskFuture

DEFAULT_PORT = 7470


class P2PQError(Exception):
    """A request the cluster refused, with a machine-readable code and one clear line.

    `transient` says whether the same request may succeed a moment later at the same
    address (a timeout may; a refused connection or a foreign certificate will not).
    """

    def __init__(self, code: str, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class InvalidRequest(P2PQError, ValueError):
    """A request that breaks the rules of docs/api.md; refused before it is sent (code "invalid")."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'host', 'host:port' or ':port' -> (host, port); ValueError with a clear reason."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    host = host or "127.0.0.1"
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad node address {text!r}: expected HOST:PORT")
    return host, int(port)


def make_spec(target: str, args: Iterable[Any] = (), *, kind: str | None = None, priority: int = 5,
              retries: int = 0, timeout_s: float | None = None, cwd: str | None = None,
              env: dict | None = None, kwargs: dict | None = None, path: str | None = None,
              after: Iterable[Any] = ()) -> TaskSpec:
    """A task spec; the kind is guessed: 'pkg.mod:fn' is python, else built-in.

    `path`: for a python task, an absolute directory the node imports its module from
    (first on its sys.path), such as a script's own directory on a shared file system.
    `after`: task ids or TaskFutures that must succeed before this task runs; it is
    `blocked` until then, and fails with "dependency <id> failed" if one fails.
    """
    if not isinstance(target, str):
        raise InvalidRequest(f"a task's target must be a string (a built-in name, pkg.mod:fn or a "
                             f"command), got {type(target).__name__}")
    kind = kind or ("python" if ":" in target else "builtin")
    options: dict[str, Any] = {}
    if kwargs:
        options["kwargs"] = kwargs
    if cwd:
        options["cwd"] = cwd
    if env:
        options["env"] = env
    if path:
        options["path"] = path
    if isinstance(after, (str, bytes)) or not isinstance(after, Iterable):
        raise InvalidRequest(f"after must be a list of task ids or futures, got {type(after).__name__}")
    try:
        spec = TaskSpec(kind, target, tuple(args), priority, retries, timeout_s, options,
                        tuple(getattr(a, "id", a) for a in after))
        spec.validate()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None
    return spec


def new_task_id() -> str:
    """16 hex digits from the OS's random source (64 bits: a clash is not a concern)."""
    return os.urandom(8).hex()


class AsyncClient:
    """asyncio client; one TLS connection to one node, re-opened when it drops."""

    def __init__(self, node: str | Sequence[str] | None = None, *, cluster_dir: str | Path | None = None,
                 timeout_s: float = 15.0, failover: bool = True) -> None:
        """`node`: an address, several ("a:7470,b:7470" or a list), or None for $P2PQ_NODE or the local
        node. With `failover` the client also learns the cluster's members when it connects, and
        when its node goes away it goes on through another; without, it talks to that node only."""
        from p2pq.net.pki import default_cluster_dir
        given = node or os.environ.get("P2PQ_NODE") or f"127.0.0.1:{DEFAULT_PORT}"
        texts = given.split(",") if isinstance(given, str) else list(given)
        try:
            self.addresses = [parse_address(text.strip()) for text in texts if text.strip()]
        except (ValueError, AttributeError) as exc:
            raise InvalidRequest(str(exc)) from None
        if not self.addresses:
            raise InvalidRequest(f"bad node address {given!r}: expected HOST:PORT")
        self.address = self.addresses[0]  # the node this client talks to (the first that answered)
        self.failover = failover
        self.cluster_dir = Path(cluster_dir or os.environ.get("P2PQ_CLUSTER_DIR") or default_cluster_dir())
        self.timeout_s = _seconds(timeout_s, "timeout_s")
        self._channel = None
        self._identity = None
        self._connecting = asyncio.Lock()  # one connection, however many requests ask for it at once
        self._members: list[tuple[str, int]] = []  # the live members' addresses, as the last node said
        self._learning: asyncio.Task | None = None
        # the pipeline: submits and watches asked for within LINGER_S go out as one request each
        self._submits: list[tuple[str, TaskSpec, asyncio.Future]] = []
        self._submit_bytes = 0
        self._in_flight = 0  # Submit requests sent and not yet answered
        self._batched: set[str] = set()  # the ids in self._submits
        self._unacked: dict[str, asyncio.Future] = {}  # every submit enqueued and not yet answered
        self._to_watch: list[str] = []
        self._watching: dict[str, asyncio.Future] = {}  # task id -> its final view, once pushed
        self._acks: dict[str, asyncio.Future] = {}  # task id -> its submit, for a watch sent with it
        self._flush_at: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task] = set()

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection; P2PQError `unreachable` if it cannot, `transient` for a timeout only."""
        from p2pq.net.pki import PKIError, ensure_identity
        from p2pq.net.transport import RequestTimeout, TransportError, open_client
        if self._identity is None:
            name = f"client-{getpass.getuser()}-{socket.gethostname().split('.')[0]}"
            try:
                self._identity = ensure_identity(self.cluster_dir, self.cluster_dir / "clients", name, "client")
            except PKIError as exc:
                raise P2PQError(ErrorCode.NO_CLUSTER, str(exc)) from None
        failures: list[P2PQError] = []
        for host, port in self._candidates():
            try:
                self._channel = await open_client(host, port, self._identity, timeout_s=min(5.0, self.timeout_s))
            except RequestTimeout as exc:  # a busy or paused node, or one cut off for a moment
                failures.append(P2PQError(ErrorCode.UNREACHABLE, str(exc), transient=True))
            except TransportError as exc:  # refused, unknown host, another cluster, not a p2pq node
                failures.append(P2PQError(ErrorCode.UNREACHABLE, str(exc)))
            else:
                self.address = (host, port)
                if self.failover:
                    if self._learning is not None:
                        self._learning.cancel()  # it asked a node we left
                    self._learning = asyncio.get_running_loop().create_task(self._learn(self._channel))
                return
        first = failures[0]
        if len(failures) > 1:  # every node known failed: say so, transient if any may answer later
            first = P2PQError(first.code, f"{first} (and {len(failures) - 1} other node(s) failed too)",
                              transient=any(f.transient for f in failures))
        raise first

    def _candidates(self) -> list[tuple[str, int]]:
        """The node to dial: ours, then (with failover) the others given, then the members learnt."""
        if not self.failover:
            return [self.address]
        return list(dict.fromkeys([self.address, *self.addresses, *self._members]))

    async def _learn(self, channel) -> None:
        """Which nodes are alive, asked of the node just reached: where to go if it goes away."""
        with contextlib.suppress(Exception):  # an old node, a lost connection: keep what we knew
            view = await channel.request(to_wire(Query("peers")), timeout_s=self.timeout_s)
            self._members = [(str(m["address"][0]), int(m["address"][1])) for m in view.get("members", [])
                             if m.get("alive") and m.get("address")]

    async def close(self) -> None:
        """End the pipeline's requests (their futures are cancelled) and the connection."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        background, self._background = self._background, set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for *_, future in self._submits:
            future.cancel()
        for future in self._watching.values():
            future.cancel()
        for future in list(self._unacked.values()):
            future.cancel()
        self._submits, self._to_watch, self._watching, self._acks = [], [], {}, {}
        self._batched = set()
        learning, self._learning = self._learning, None
        if learning is not None and not learning.done():
            learning.cancel()
            await asyncio.gather(learning, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def _connected(self):
        """The open channel, opened once even when several requests ask at once (Client from threads)."""
        if self._channel is None:
            async with self._connecting:
                if self._channel is None:
                    await self.connect()
        return self._channel

    async def _drop(self, channel) -> None:
        """A channel that failed goes, unless another request already replaced it."""
        if self._channel is channel:
            self._channel = None
        await channel.close()

    async def request(self, message: Any, *, deadline_s: float | None = None,
                      retry: Iterable[str] = RETRYABLE, checked: bool = False) -> dict:
        """Send a request, retrying what the cluster calls transient until the deadline.

        The request is checked first exactly as the node will check it
        (InvalidRequest), unless the caller built it from checked parts
        (`checked`); every failure is a P2PQError with one clear line.
        """
        from p2pq.net.transport import ChannelClosed, RequestTimeout, TransportError
        wire = to_wire(message) if checked else _checked_wire(message)
        deadline = time.monotonic() + (self.timeout_s if deadline_s is None else deadline_s)
        delay, last = 0.02, "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise P2PQError(ErrorCode.TIMEOUT, f"gave up after {self.timeout_s:g} s: {last}")
            channel = None
            try:
                channel = await self._connected()
                reply = await channel.request(dict(wire), timeout_s=remaining)
            except ChannelClosed as exc:
                last = str(exc)
                await self._drop(channel)
            except RequestTimeout as exc:  # this request's deadline: the connection may serve others still
                last = str(exc)
            except TransportError as exc:  # the request itself cannot be sent (too large)
                raise P2PQError(ErrorCode.TOO_LARGE, str(exc)) from None
            except P2PQError as exc:
                if not exc.transient:
                    raise  # connection refused, another cluster: the one line now, not after the deadline
                last = str(exc)
            else:
                if reply.get("ok"):
                    return reply
                code, last = reply.get("error", "error"), reply.get("message", "request failed")
                if code not in retry:
                    raise P2PQError(code, last)
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    # -- the pipeline -------------------------------------------------------------------
    #
    # Many requests in flight on one connection: a submit asked for while
    # another is in flight waits about LINGER_S for others to go with it (at
    # most MAX_BATCH tasks or MAX_BATCH_BYTES in one Submit; with none in
    # flight it goes at once), and results come back by subscription:
    # one Watch for all the tasks asked for within LINGER_S, whose results
    # the node pushes as the tasks end. A watch that a failover cuts short
    # is made again, through the next leader, for the tasks still unfinished.

    LINGER_S = 0.001
    MAX_BATCH = 1000
    MAX_BATCH_BYTES = 4 * 1024 * 1024

    def enqueue(self, spec: TaskSpec, task_id: str | None = None) -> asyncio.Future[str]:
        """Submit `spec` with the next batch; the future gives its id once the cluster holds it.

        The spec must come from make_spec (checked); a refusal (P2PQError)
        is the future's exception. Call from the client's event loop.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task_id = task_id or new_task_id()
        self._unacked[task_id] = future
        future.add_done_callback(lambda _: self._unacked.pop(task_id, None))
        # A task that runs after one still on its way goes in the same batch, or after its ack:
        # a retried batch could otherwise reach the leader behind it (an unknown dependency).
        waits = [self._unacked[d] for d in spec.after if d in self._unacked and d not in self._batched]
        if waits:
            self._spawn(self._enqueue_after(waits, task_id, spec, future))
        else:
            self._batch(task_id, spec, future)
        return future

    def _batch(self, task_id: str, spec: TaskSpec, future: asyncio.Future) -> None:
        self._submits.append((task_id, spec, future))
        self._batched.add(task_id)
        self._submit_bytes += spec.approx_bytes
        if len(self._submits) >= self.MAX_BATCH or self._submit_bytes >= self.MAX_BATCH_BYTES:
            self._flush_submits()
        else:
            self._flush_soon()

    async def _enqueue_after(self, waits: list[asyncio.Future], task_id: str, spec: TaskSpec,
                             future: asyncio.Future) -> None:
        for dependency in await asyncio.gather(*waits, return_exceptions=True):
            if isinstance(dependency, BaseException):
                if not future.done():
                    future.set_exception(P2PQError(ErrorCode.INVALID, f"task {task_id} runs after a task "
                                                   f"whose submit failed: {dependency}"))
                return
        if not future.done():
            self._batch(task_id, spec, future)

    def watch(self, task_id: str, acked: asyncio.Future | None = None) -> asyncio.Future[dict]:
        """The task's final view (see describe_end in core/tasks.py), pushed by the node when it ends.

        One watch per task id: asking again gives the same future. Call from
        the client's event loop. With `acked`, the future of the task's own
        submit (enqueue), the watch goes out with the submit instead of a
        round trip after it: a node that does not know the task yet (the
        submit was retried through another leader) is asked again once the
        submit is acknowledged.
        """
        future = self._watching.get(task_id)
        if future is None:
            future = self._watching[task_id] = asyncio.get_running_loop().create_future()
            if acked is not None and not acked.done():
                self._acks[task_id] = acked
                acked.add_done_callback(lambda _: self._acks.pop(task_id, None))
            self._to_watch.append(task_id)
            self._flush_soon()
        return future

    def _unknown(self, task_id: str) -> None:
        """A watched task the node does not know: not submitted yet, or never (or long ago)."""
        acked = self._acks.get(task_id)
        if acked is None or acked.done():
            self._fail_watch(task_id, P2PQError(ErrorCode.UNKNOWN_TASK, f"no task with id {task_id} "
                                                "(it was never submitted, or finished and was pruned)"))
            return

        def again(done: asyncio.Future) -> None:
            if task_id not in self._watching:
                return
            if done.cancelled() or done.exception() is not None:
                self._fail_watch(task_id, done.exception() if not done.cancelled() else
                                 P2PQError(ErrorCode.INTERNAL, "the submit was abandoned"))
            else:
                self._to_watch.append(task_id)
                self._flush_soon()
        acked.add_done_callback(again)

    def _flush_soon(self) -> None:
        """Flush at the loop's next turn if no submit is in flight (a lone call waits for nothing),
        else in LINGER_S: under load the calls made meanwhile go with it."""
        if self._flush_at is None:
            loop = asyncio.get_running_loop()
            self._flush_at = loop.call_later(self.LINGER_S if self._in_flight else 0.0, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        self._flush_submits()
        ids, self._to_watch = self._to_watch, []
        for start in range(0, len(ids), schema.MAX_SUBMIT_TASKS):
            self._spawn(self._watch_until_done(ids[start:start + schema.MAX_SUBMIT_TASKS]))

    def _flush_submits(self) -> None:
        batch, self._submits, self._submit_bytes = self._submits, [], 0
        self._batched = set()
        if batch:
            self._spawn(self._send_submits(batch))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_submits(self, batch: list[tuple[str, TaskSpec, asyncio.Future]]) -> None:
        """One Submit for the batch. A batch refused for one of its tasks (a conflicting id, too
        large) is split in halves and sent again, so each future gets its own answer."""
        self._in_flight += 1
        try:
            await self.request(Submit(tuple((task_id, spec) for task_id, spec, _ in batch)), checked=True)
        except P2PQError as exc:
            if len(batch) > 1 and exc.code in (ErrorCode.INVALID, ErrorCode.CONFLICT, ErrorCode.TOO_LARGE):
                half = len(batch) // 2
                await asyncio.gather(self._send_submits(batch[:half]), self._send_submits(batch[half:]))
                return
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(P2PQError(exc.code, str(exc), exc.transient))
            return
        finally:
            self._in_flight -= 1
        for task_id, _, future in batch:
            if not future.done():
                future.set_result(task_id)

    async def _watch_until_done(self, ids: list[str]) -> None:
        """Watch `ids` until each has its final view: through failovers, and reconnecting."""
        from p2pq.net.transport import ChannelClosed
        remaining = set(ids)

        def take(body: dict) -> None:
            for view in body.get("tasks", ()):
                task_id = view.get("id")
                remaining.discard(task_id)
                future = self._watching.pop(task_id, None)
                if future is not None and not future.done():
                    future.set_result(view)
            for task_id in body.get("unknown", ()):
                remaining.discard(task_id)
                self._unknown(task_id)

        delay = 0.02
        while remaining:
            channel = None
            try:
                channel = await self._connected()
                reply = await channel.request(to_wire(Watch(tuple(remaining))), timeout_s=math.inf, on_push=take)
            except ChannelClosed:
                await self._drop(channel)
            except P2PQError as exc:
                if not exc.transient:  # no node of the cluster can be reached at all
                    for task_id in remaining:
                        self._fail_watch(task_id, P2PQError(exc.code, str(exc)))
                    return
            else:
                take(reply)
                code = reply.get("error")
                if reply.get("ok") or code not in RETRYABLE:
                    for task_id in remaining:  # a node that answered without them: it cannot tell
                        self._fail_watch(task_id, P2PQError(code or ErrorCode.INTERNAL,
                                                            reply.get("message", "the watch ended early")))
                    return
                delay = 0.02 if code == ErrorCode.LEADER_CHANGED else delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _fail_watch(self, task_id: str, exc: P2PQError) -> None:
        future = self._watching.pop(task_id, None)
        if future is not None and not future.done():
            future.set_exception(exc)

    # -- the API ------------------------------------------------------------------------
    async def submit_spec(self, spec: TaskSpec, task_id: str | None = None) -> dict:
        """Submit one task; returns {'ids': [id], 'replicated': bool, 'leader', 'term'}."""
        return await self.submit_many([(task_id or new_task_id(), spec)])

    async def submit_many(self, tasks: list[tuple[str, TaskSpec]]) -> dict:
        return await self.request(Submit(tuple(tasks)))

    async def submit(self, target: str, *args: Any, **options: Any) -> str:
        reply = await self.submit_spec(make_spec(target, args, **options))
        return reply["ids"][0]

    async def status(self, task_id: str) -> dict:
        return (await self.request(Query("task", {"id": task_id})))["task"]

    async def wait(self, task_id: str, timeout_s: float | None = None) -> dict:
        """Block until the task is finished; returns the task view."""
        if timeout_s is not None:
            timeout_s = _seconds(timeout_s, "timeout_s")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise P2PQError(ErrorCode.TIMEOUT, f"task {task_id} did not finish within {timeout_s:g} s")
            try:
                step = 3600.0 if remaining is None else remaining
                reply = await self.request(Wait(task_id), deadline_s=step,
                                           retry=RETRYABLE | {ErrorCode.TIMEOUT})
                return reply["task"]
            except P2PQError as exc:
                if exc.code != ErrorCode.TIMEOUT:
                    raise

    async def list(self, state: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        return await self.request(Query("list", params))

    async def cancel(self, task_id: str, queued_only: bool = False) -> dict:
        return await self.request(Cancel(task_id, queued_only))

    async def peers(self) -> dict:
        return await self.request(Query("peers"))

    async def stats(self) -> dict:
        return await self.request(Query("stats"))


def _checked_wire(message: Any) -> dict:
    """The wire form of a request, checked by the node's own decoder; InvalidRequest if it fails."""
    try:
        wire = to_wire(message)
        decode_client_request(wire)
    except InvalidRequest:
        raise
    except Exception as exc:  # DecodeError, or a value to_wire cannot even take apart
        raise InvalidRequest(str(exc) if isinstance(exc, ValueError) else
                             f"malformed request: {type(exc).__name__}: {exc}") from None
    return wire


def _seconds(value: Any, what: str) -> float:
    try:
        return schema.number(value, what, 0.0, schema.MAX_TIMEOUT_S)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


class Client:
    """The blocking API: the same methods as AsyncClient, on a private event loop thread."""

    def __init__(self, node: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="p2pq-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(node, **options)
        self._inbox: collections.deque = collections.deque()  # calls for the loop thread, from any thread
        self._woken = False

    @property
    def address(self) -> tuple[str, int]:
        """The node this client talks to now (another one after a failover)."""
        return self._async.address

    def _call(self, coro):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:  # Ctrl-C while waiting: the request ends with the call
            future.cancel()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """End every request still running (another thread's, or one Ctrl-C left), then the connection."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._async.close()

    def submit(self, target: str, *args: Any, **options: Any) -> str:
        """Submit one task and return its id once the cluster holds it (a round trip)."""
        for dependency in options.get("after", ()):  # a future's own submit must be held first
            if hasattr(dependency, "acknowledged"):
                dependency.acknowledged()
        return self._call(self._async.submit(target, *args, **options))

    def submit_future(self, target: str, *args: Any, **options: Any) -> TaskFuture:
        """Submit one task without waiting: its TaskFuture at once (p2pq/futures.py).

        The arguments are checked now (InvalidRequest); what only the cluster
        can refuse (an unknown built-in, no quorum) raises from `result()`.
        """
        return self.submit_future_spec(make_spec(target, args, **options))

    def submit_future_spec(self, spec: TaskSpec, task_id: str | None = None) -> TaskFuture:
        from p2pq.futures import TaskFuture
        future = TaskFuture(self, task_id or new_task_id(), spec)
        self._post(self._pipe, future)
        return future

    def cancel_queued(self, futures: Iterable[TaskFuture]) -> None:
        """Cancel these futures' tasks that have not started, without waiting for the answers."""
        for future in futures:
            self._post(self._cancel_soon, future)

    # -- the loop thread's side of the futures -------------------------------------------
    def _post(self, fn, *args) -> None:
        """Run fn(*args) on the loop thread; many posts between two wake-ups cost one wake-up."""
        self._inbox.append((fn, args))
        if not self._woken:
            self._woken = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # closed
                self._inbox.clear()
                self._woken = False
                raise P2PQError(ErrorCode.INVALID, "this client is closed") from None

    def _drain(self) -> None:
        self._woken = False
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            try:
                fn(*args)
            except Exception as exc:  # one future's trouble is its own
                future = args[0] if args else None
                if future is not None and hasattr(future, "_refused"):
                    future._refused(exc)

    def _pipe(self, future: TaskFuture) -> None:
        acked = future._ack = self._async.enqueue(future.spec, future.id)
        acked.add_done_callback(lambda done: self._acked(future, done))
        ended = self._async.watch(future.id, acked)  # goes out right behind the submit
        ended.add_done_callback(lambda done: self._ended(future, done))

    def _acked(self, future: TaskFuture, acked: asyncio.Future) -> None:
        if acked.cancelled():  # the client closed first
            future._refused(P2PQError(ErrorCode.INTERNAL, "the client closed before the submit was "
                                      "acknowledged; the task may or may not exist"))
            return
        if acked.exception() is not None:
            future._refused(acked.exception())
            return
        future._held_now()

    @staticmethod
    def _ended(future: TaskFuture, ended: asyncio.Future) -> None:
        if ended.cancelled():
            future._refused(P2PQError(ErrorCode.INTERNAL, "the client closed before the task ended"))
        elif ended.exception() is not None:
            future._refused(ended.exception())
        else:
            future._ended(ended.result())

    def _cancel_soon(self, future: TaskFuture) -> None:
        async def cancel() -> None:
            with contextlib.suppress(P2PQError):
                await future._ack  # posted before us: the submit is on its way
                await self._async.cancel(future.id, queued_only=True)
        if not future.done():
            self._async._spawn(cancel())

    def submit_spec(self, spec: TaskSpec, task_id: str | None = None) -> dict:
        return self._call(self._async.submit_spec(spec, task_id))

    def submit_many(self, tasks: list[tuple[str, TaskSpec]]) -> dict:
        """Submit several (task id, spec) in one request; the reply's `ids` once the cluster holds all."""
        return self._call(self._async.submit_many(tasks))

    def status(self, task_id: str) -> dict:
        return self._call(self._async.status(task_id))

    def result(self, task_id: str, wait: bool = False, timeout_s: float | None = None) -> dict:
        if wait:
            return self._call(self._async.wait(task_id, timeout_s))
        return self._call(self._async.status(task_id))

    def list(self, state: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        return self._call(self._async.list(state, limit, offset))

    def cancel(self, task_id: str, queued_only: bool = False) -> dict:
        """Cancel a task (a running one is stopped, unless `queued_only`); the reply says its state."""
        return self._call(self._async.cancel(task_id, queued_only))

    def peers(self) -> dict:
        return self._call(self._async.peers())

    def stats(self) -> dict:
        return self._call(self._async.stats())


__all__ = ["Client", "AsyncClient", "P2PQError", "InvalidRequest", "make_spec", "parse_address", "new_task_id",
           "spec_to_wire"]
