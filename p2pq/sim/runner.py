"""Run one scenario for one seed: build the world, apply faults, heal, drain, check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from p2pq.core.types import Config

from .checker import Report, check
from .workload import Clients, Workload
from .world import LinkModel, World

Scenario = Callable[[World], None]  # schedules its faults on the world


@dataclass(slots=True)
class RunResult:
    scenario: str
    seed: int
    nodes: int
    mode: str
    report: Report
    trace_hash: str
    drained: bool
    sim_time_s: float
    leader: str | None
    world: World | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.report.ok and self.drained

    def problems(self) -> list[str]:
        out = list(self.report.problems)
        if not self.drained:
            out.append("the queue did not drain after the heal")
        return out

    def replay_command(self) -> str:
        return (f"p2pq sim {self.scenario} --seed {self.seed} --nodes {self.nodes} "
                f"--mode {self.mode} --trace")


def run(scenario_name: str, scenario: Scenario, seed: int, *, nodes: int = 5, mode: str = "available",
        workload: Workload | None = None, link: LinkModel | None = None, config: Config | None = None,
        end_faults_s: float = 9.0, drain_deadline_s: float = 40.0, keep_world: bool = False) -> RunResult:
    """One seeded run. Faults end by `end_faults_s`: everything heals and restarts, then the queue drains."""
    if config is None:
        config = Config(quorum=nodes if mode == "quorum" else 0)
    world = World(nodes, seed, config, link=link, **getattr(scenario, "world_options", {}))
    clients = Clients(world, workload or Workload())
    clients.start()
    scenario(world)
    world.run_until(end_faults_s)
    world.heal()
    for node_id, node in world.nodes.items():
        if node.paused:
            world.resume(node_id)
    drained = world.run_while(lambda: not _settled(world, clients), end_faults_s + drain_deadline_s)
    leaders = world.leaders()
    leader = leaders[0] if len(leaders) == 1 else None
    final = dict(world.nodes[leader].core.table.records) if leader else {}
    report = check(world.history, final)
    return RunResult(scenario_name, seed, nodes, mode, report, world.trace_hash, drained, world.now,
                     leader, world if keep_world else None)


def _settled(world: World, clients: Clients) -> bool:
    """One leader, no client still trying, every acknowledged task finished."""
    if clients.in_flight or world.now < clients.w.stop_s:
        return False
    leaders = world.leaders()
    if len(leaders) != 1:
        return False
    table = world.nodes[leaders[0]].core.table
    for task_id, op in world.history.ops.items():
        if op.acked_at is not None:
            record = table.get(task_id)
            if record is None or not record.state.terminal:
                return False
    return True
