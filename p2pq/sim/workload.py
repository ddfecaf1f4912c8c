"""Simulated clients: streams of submits with retries, like p2pq.Client.

Each client is attached to one node (its `P2PQ_NODE`) and, like
p2pq.Client, retries there with the same task id until the task is
acknowledged or the client gives up; so a client on the minority side of a
partition keeps asking the minority, which is what tells available mode
from quorum mode. With `failover=True` a client also knows the other nodes
and moves on after a timeout, a refused connection or MOVE_ON_AFTER
refusals in a row. Clients submit tasks of mixed priorities and durations,
steadily (a Poisson process) or in bursts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from p2pq.core.messages import Submit
from p2pq.core.tasks import TaskSpec

from .world import World

# A refused or unanswered submit is retried under the same task id, so a retry
# never creates a second task, whether or not the first attempt added one.
MOVE_ON_AFTER = 3  # refusals in a row from one node before trying the next


@dataclass(frozen=True, slots=True)
class Workload:
    """`rate_per_s` submits per second in total, from `start_s` to `stop_s`.

    stop_s None means one second before the faults end (set by the runner).
    """

    rate_per_s: float = 20.0
    start_s: float = 1.5
    stop_s: float | None = None
    clients: int | None = None          # None: one client per node
    priorities: tuple[int, ...] = (1, 2, 3, 5, 8)
    duration_s: tuple[float, float] = (0.01, 0.2)
    bursty: bool = False
    p_burst: float = 0.1                # chance that an arrival is a burst
    burst_size: tuple[int, int] = (5, 30)
    reply_timeout_s: float = 1.0
    give_up_after_s: float = 15.0
    retry_backoff_s: float = 0.1
    failover: bool = False              # True: a client tries the other nodes too
    p_big: float = 0.0                  # chance that a task carries a big argument
    big_arg_bytes: int = 512 * 1024     # its size (the spec limit is 1 MiB)
    hostile_rate_per_s: float = 10.0    # requests a second from the hostile client (hostile.py); 0: none

    def until(self, stop_s: float) -> Workload:
        return self if self.stop_s is not None else replace(self, stop_s=stop_s)


class Client:
    """One client: a home node, a stream of tasks, and their retries."""

    def __init__(self, clients: Clients, name: str, home: int) -> None:
        self.clients, self.name = clients, name
        self.world, self.w, self.rng = clients.world, clients.w, clients.rng
        self.order = self.world.ids[home:] + self.world.ids[:home]  # home first, then the others
        self.at = 0          # index into order: the node we talk to now
        self.refusals = 0    # in a row, from that node
        self.count = 0

    def start(self) -> None:
        self.world.call_at(self.w.start_s + self.rng.expovariate(self._rate()), self._arrival)

    def _rate(self) -> float:
        return self.w.rate_per_s / len(self.clients.all)

    def _arrival(self) -> None:
        world, w = self.world, self.w
        if world.now >= w.stop_s:
            return
        burst = self.rng.randint(*w.burst_size) if w.bursty and self.rng.random() < w.p_burst else 1
        for _ in range(burst):
            self._submit_new()
        world.call_at(world.now + self.rng.expovariate(self._rate()), self._arrival)

    def _submit_new(self) -> None:
        self.submit(self.rng.choice(self.w.priorities))

    def submit(self, priority: int) -> str:
        """Submit one task now (and retry it until acknowledged or given up); returns its id."""
        self.count += 1
        task_id = f"{self.name}-{self.count:05d}"
        duration = round(self.rng.uniform(*self.w.duration_s), 4)
        pad = ("x" * self.w.big_arg_bytes,) if self.w.p_big and self.rng.random() < self.w.p_big else ()
        spec = TaskSpec("builtin", "sleep", (duration, *pad), priority=priority)
        self.world.history.invoke(task_id, spec.priority, self.world.now, self.name)
        self.clients.in_flight.add(task_id)
        self._attempt(task_id, spec, self.world.now)
        return task_id

    def _attempt(self, task_id: str, spec: TaskSpec, first_at: float) -> None:
        world = self.world
        if world.now - first_at > self.w.give_up_after_s:
            self.clients.in_flight.discard(task_id)
            world.history.give_up(task_id, world.now)
            return
        state = {"answered": False}

        def on_reply(body: dict) -> None:
            if not state["answered"]:
                state["answered"] = True
                self._on_reply(task_id, spec, first_at, body)

        def on_timeout() -> None:
            if not state["answered"]:
                state["answered"] = True
                world.history.fail(task_id, world.now, "timeout")
                self._next_node()
                self._attempt(task_id, spec, first_at)

        for _ in self.order if self.w.failover else self.order[:1]:
            if world.request(self.order[self.at], Submit(((task_id, spec),)), on_reply):
                world.call_at(world.now + self.w.reply_timeout_s, on_timeout)
                return
            self._next_node()  # connection refused: the next address at once, if we know one
        self._retry_later(task_id, spec, first_at)

    def _on_reply(self, task_id: str, spec: TaskSpec, first_at: float, body: dict) -> None:
        world = self.world
        if body.get("ok"):
            world.history.ack(task_id, world.now, body.get("term"), body.get("replicated"))
            self.clients.in_flight.discard(task_id)
            self.refusals = 0
            return
        world.history.fail(task_id, world.now, body.get("error", "?"))
        self.refusals += 1
        if self.refusals >= MOVE_ON_AFTER:
            self._next_node()
        self._retry_later(task_id, spec, first_at)

    def _retry_later(self, task_id: str, spec: TaskSpec, first_at: float) -> None:
        self.world.call_at(self.world.now + self.w.retry_backoff_s,
                           lambda: self._attempt(task_id, spec, first_at))

    def _next_node(self) -> None:
        if self.w.failover:
            self.at = (self.at + 1) % len(self.order)
        self.refusals = 0


class Clients:
    """All the clients of a run, one attached to each node in turn."""

    def __init__(self, world: World, workload: Workload) -> None:
        self.world = world
        self.w = workload if workload.stop_s is not None else workload.until(8.0)
        self.rng = world.rng_clients
        self.in_flight: set[str] = set()
        n = workload.clients or len(world.ids)
        self.all = [Client(self, f"c{i + 1}", i % len(world.ids)) for i in range(n)]
        from .hostile import HostileClient
        self.hostile = HostileClient(world, self.w.hostile_rate_per_s, self.w.start_s, self.w.stop_s)

    def start(self) -> None:
        for client in self.all:
            client.start()
        self.hostile.start()

    @property
    def done(self) -> bool:
        """The stream has ended and no task is still being retried."""
        return not self.in_flight and self.world.now >= self.w.stop_s

    @property
    def count(self) -> int:
        return sum(c.count for c in self.all)
