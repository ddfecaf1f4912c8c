"""Simulated clients: a stream of submits with retries, like p2pq.Client."""

from __future__ import annotations

from dataclasses import dataclass

from p2pq.core.messages import Submit
from p2pq.core.tasks import TaskSpec

from .world import World

# Errors after which the task certainly was not added: retrying is safe and
# needed. Any other error, or no reply, leaves it unknown: the retry reuses
# the task id, so it cannot create a second task either way.
DEFINITE = {"no_leader", "no_quorum", "unreplicated", "invalid"}


@dataclass(slots=True)
class Workload:
    """Submit `rate_per_s` tasks per second from `start_s` to `stop_s`."""

    rate_per_s: float = 20.0
    start_s: float = 1.5
    stop_s: float = 8.0
    priorities: tuple[int, ...] = (1, 2, 3, 5, 8)
    duration_s: tuple[float, float] = (0.01, 0.2)
    bursty: bool = False
    reply_timeout_s: float = 1.0
    give_up_after_s: float = 15.0
    retry_backoff_s: float = 0.1


class Clients:
    """Clients attached to random nodes; each task is retried until acknowledged or given up."""

    def __init__(self, world: World, workload: Workload) -> None:
        self.world, self.w = world, workload
        self.rng = world.rng
        self.count = 0
        self.in_flight: set[str] = set()

    def start(self) -> None:
        self.world.call_at(self.w.start_s, self._next)

    def _next(self) -> None:
        world, w = self.world, self.w
        if world.now >= w.stop_s:
            return
        burst = self.rng.randint(5, 30) if w.bursty and self.rng.random() < 0.1 else 1
        for _ in range(burst):
            self._submit_new()
        gap = self.rng.expovariate(w.rate_per_s)
        world.call_at(world.now + gap, self._next)

    def _submit_new(self) -> None:
        self.count += 1
        task_id = f"t{self.count:05d}"
        duration = round(self.rng.uniform(*self.w.duration_s), 4)
        spec = TaskSpec("builtin", "sleep", (duration,), priority=self.rng.choice(self.w.priorities))
        self.world.history.invoke(task_id, spec.priority, self.world.now)
        self.in_flight.add(task_id)
        self._attempt(task_id, spec, self.world.now)

    def _attempt(self, task_id: str, spec: TaskSpec, first_at: float) -> None:
        world = self.world
        if task_id not in self.in_flight:
            return
        if world.now - first_at > self.w.give_up_after_s:
            self.in_flight.discard(task_id)
            world.history.fail(task_id, world.now, "gave_up")
            return
        alive = [n for n in world.ids if world.nodes[n].alive]
        via = self.rng.choice(alive) if alive else None
        state = {"answered": False}

        def on_reply(body: dict) -> None:
            if state["answered"]:
                return
            state["answered"] = True
            if body.get("ok"):
                world.history.ack(task_id, world.now, body.get("term"), body.get("replicated"))
                self.in_flight.discard(task_id)
            else:
                world.history.fail(task_id, world.now, body.get("error", "?"))
                world.call_at(world.now + self.w.retry_backoff_s,
                              lambda: self._attempt(task_id, spec, first_at))

        def on_timeout() -> None:
            if not state["answered"]:
                state["answered"] = True
                world.history.fail(task_id, world.now, "timeout")
                self._attempt(task_id, spec, first_at)

        if via is None or not world.request(via, Submit(((task_id, spec),)), on_reply):
            world.call_at(world.now + self.w.retry_backoff_s, lambda: self._attempt(task_id, spec, first_at))
            return
        world.call_at(world.now + self.w.reply_timeout_s, on_timeout)
