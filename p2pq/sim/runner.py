"""Run one scenario for one seed: build the world, apply faults, heal, wait, drain, check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from p2pq.core.types import Config

from .checker import Report, check
from .links import LinkModel
from .workload import Clients, Workload
from .world import World

ScheduleFn = Callable[[World], None]  # a Scenario, or any function that schedules faults
DEFAULT_DURATION_S = 10.0


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
    duration_s: float = DEFAULT_DURATION_S
    source: str | None = None   # the scenario file, when it came from one
    own_duration_s: float = DEFAULT_DURATION_S  # the scenario's default, left out of replay commands
    wall_s: float = 0.0
    world: World | None = field(default=None, repr=False)
    election: str = "classic"

    @property
    def ok(self) -> bool:
        return self.report.ok and self.drained

    def problems(self) -> list[str]:
        out = list(self.report.problems)
        if not self.drained:
            out.append("the queue did not drain after the heal (no single leader, or acknowledged "
                       "tasks unfinished)")
        return out

    def replay_command(self) -> str:
        command = (f"p2pq sim {self.source or self.scenario} --seed {self.seed} --nodes {self.nodes} "
                   f"--mode {self.mode}")
        if self.duration_s != self.own_duration_s:
            command += f" --duration {self.duration_s:g}"
        if self.election != "classic":
            command += f" --election {self.election}"
        return command + " --trace"


def run(scenario_name: str, scenario: ScheduleFn, seed: int, *, nodes: int = 5, mode: str = "available",
        workload: Workload | None = None, link: LinkModel | None = None, config: Config | None = None,
        end_faults_s: float | None = None, drain_deadline_s: float = 40.0, keep_world: bool = False,
        restart_at_heal: bool | None = None) -> RunResult:
    """One seeded run. Faults end by `end_faults_s` (default: the scenario's duration); then
    everything heals, crashed nodes restart from their disks, and the queue must drain."""
    own_duration = getattr(scenario, "duration_s", DEFAULT_DURATION_S)
    duration = end_faults_s or own_duration
    if config is None:
        config = Config(quorum=nodes if mode == "quorum" else 0)
    options = dict(getattr(scenario, "world_options", {}))
    if link is not None:
        options["link"] = link
    world = World(nodes, seed, config, **options)
    world.fault_end_s = duration
    base = workload or getattr(scenario, "workload", None) or Workload()
    clients = Clients(world, base.until(duration - 1.0))
    clients.start()
    scenario(world)
    world.run_until(duration)
    restart = restart_at_heal if restart_at_heal is not None else getattr(scenario, "restart_at_heal", True)
    heal_everything(world, restart)
    drained = world.run_while(lambda: not settled(world, clients), duration + drain_deadline_s)
    world.finish()
    leaders = world.leaders()
    leader = leaders[0] if len(leaders) == 1 else None
    final = dict(world.nodes[leader].core.table.records) if leader else {}
    report = check(world.history, final, quorum=config.quorum > 0, messages=world.messages_by_type,
                   codec_errors=world.codec_errors)
    return RunResult(scenario_name, seed, nodes, mode, report, world.trace_hash, drained, world.now,
                     leader, duration, getattr(scenario, "source", None), own_duration,
                     world=world if keep_world else None, election=config.election)


def heal_everything(world: World, restart_crashed: bool = True) -> None:
    """The end of every schedule: faults undone, partitions healed, links fixed, nodes back."""
    world.keep_crashed_down = not restart_crashed
    for undo in world.at_heal:
        undo()
    world.at_heal = []
    world.heal()
    world.heal_links()
    for node_id, node in world.nodes.items():
        if node.paused:
            world.resume(node_id)
        elif not node.alive and restart_crashed:
            world.restart(node_id)
    world.history.close_windows(world.now)


def settled(world: World, clients: Clients) -> bool:
    """One leader, no client still trying, every acknowledged task finished."""
    if not clients.done:
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

