"""Sweep a scenario over seeds: the engine behind `p2pq sim`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .checker import merge_reports
from .runner import RunResult, run
from .scenarios import SCENARIOS


@dataclass(slots=True)
class Sweep:
    scenario: str
    mode: str
    nodes: int
    results: list[RunResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> dict:
        total = merge_reports(r.report for r in self.results)
        sim_s = sum(r.sim_time_s for r in self.results)
        return {"scenario": self.scenario, "mode": self.mode, "nodes": self.nodes,
                "seeds": len(self.results), **total,
                "undrained_runs": sum(1 for r in self.results if not r.drained),
                "sim_seconds": round(sim_s, 1), "wall_seconds": round(self.wall_s, 2),
                "speedup": round(sim_s / self.wall_s, 1) if self.wall_s else None}


def sweep(scenario: str, seeds: range, *, mode: str = "available", nodes: int = 5,
          on_result: Callable[[RunResult], None] | None = None, keep_world: bool = False) -> Sweep:
    if scenario not in SCENARIOS:
        raise KeyError(scenario)
    out = Sweep(scenario, mode, nodes)
    start = time.perf_counter()
    for seed in seeds:
        result = run(scenario, SCENARIOS[scenario], seed, nodes=nodes, mode=mode, keep_world=keep_world)
        out.results.append(result)
        if on_result is not None:
            on_result(result)
    out.wall_s = time.perf_counter() - start
    return out
