"""Sweep a scenario over seeds, on one core or several: the engine behind `p2pq sim`.

Seeds are independent, so `jobs > 1` farms them out to worker processes;
results come back in seed order and each one is exactly what a lone run of
that seed gives (the trace hash says so), whatever the number of jobs.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from p2pq.core.types import Config
from p2pq.stats import percentile

from .checker import Report
from .runner import RunResult, run
from .scenarios import get

COUNTS = ("attempted", "acknowledged", "lost", "unexpected", "duplicated", "recovered", "executions",
          "refused", "gave_up", "terms", "priority_inversions", "stale_acks", "failovers_unfinished",
          "unavailable_windows", "internal_errors", "codec_errors", "hostile_sent", "hostile_accepted")
SECONDS = ("multi_leader_s", "concurrent_ack_s", "unavailable_s")


@dataclass(slots=True)
class Sweep:
    scenario: str
    mode: str
    nodes: int
    results: list[RunResult] = field(default_factory=list)
    wall_s: float = 0.0
    jobs: int = 1

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> dict:
        """Everything summed over the seeds, plus failover and speed statistics."""
        total = merge_reports(r.report for r in self.results)
        sim_s = sum(r.sim_time_s for r in self.results)
        per_run = sorted(r.sim_time_s / r.wall_s for r in self.results if r.wall_s > 0)
        return {"scenario": self.scenario, "mode": self.mode, "nodes": self.nodes,
                "seeds": len(self.results), **total,
                "failing_runs": len(self.failures),
                "undrained_runs": sum(1 for r in self.results if not r.drained),
                "sim_seconds": round(sim_s, 1), "wall_seconds": round(self.wall_s, 2), "jobs": self.jobs,
                "speedup": round(sim_s / self.wall_s, 1) if self.wall_s else None,
                "speedup_per_run_median": round(statistics.median(per_run), 1) if per_run else None}


def merge_reports(reports: Iterable[Report]) -> dict:
    """Sum a sweep of runs into one table (failover times are pooled, then summarized)."""
    total: dict = defaultdict(int)
    failovers: list[float] = []
    messages: dict[str, int] = defaultdict(int)
    for rep in reports:
        for key in COUNTS:
            total[key] += getattr(rep, key)
        for key in SECONDS:
            total[key] += getattr(rep, key)
        total["leaders_per_term_max"] = max(total["leaders_per_term_max"], rep.leaders_per_term_max)
        total["runs_with_multi_leader"] += 1 if rep.multi_leader_s > 0 else 0
        failovers += rep.failover_s
        for kind, n in rep.messages.items():
            messages[kind] += n
    for key in SECONDS:
        total[key] = round(total[key], 3)
    failovers.sort()
    total["failovers"] = len(failovers)
    for p in (50, 90, 99):
        total[f"failover_p{p}_s"] = round(percentile(failovers, p), 3) if failovers else None
    total["failover_max_s"] = round(failovers[-1], 3) if failovers else None
    total["messages"] = dict(sorted(messages.items()))
    return dict(total)


def sweep(scenario: str, seeds: Iterable[int], *, mode: str = "available", nodes: int = 5,
          on_result: Callable[[RunResult], None] | None = None, keep_world: bool = False,
          jobs: int = 1, duration_s: float | None = None, config: dict | None = None) -> Sweep:
    """Run `scenario` (a name or a scenario file) once per seed.

    `config` overrides protocol settings (p2pq.core.types.Config fields), e.g.
    {"failure_timeout_s": 2.0}; the mode still decides the quorum.
    """
    found = get(scenario)  # KeyError early, in this process, for an unknown name
    seeds = list(seeds)
    jobs = max(1, min(jobs, len(seeds), os.cpu_count() or 1))
    out = Sweep(found.name, mode, nodes, jobs=jobs)
    start = time.perf_counter()
    args = [(scenario, seed, mode, nodes, duration_s, keep_world, config) for seed in seeds]
    if jobs == 1 or keep_world:
        results: Iterable[RunResult] = map(_run_one, args)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(jobs)
        results = pool.imap(_run_one, args, chunksize=max(1, min(16, len(args) // (jobs * 8))))
    try:
        for result in results:
            out.results.append(result)
            if on_result is not None:
                on_result(result)
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or a crash: do not wait for the rest of the seeds
        raise
    if pool is not None:
        pool.close()
        pool.join()
    out.wall_s = time.perf_counter() - start
    return out


def _run_one(args: tuple) -> RunResult:
    scenario, seed, mode, nodes, duration_s, keep_world, overrides = args
    found = get(scenario)
    config = Config(quorum=nodes if mode == "quorum" else 0, **(overrides or {}))
    start = time.perf_counter()
    result = run(found.name, found, seed, nodes=nodes, mode=mode, end_faults_s=duration_s,
                 keep_world=keep_world, config=config)
    result.wall_s = time.perf_counter() - start
    return result
