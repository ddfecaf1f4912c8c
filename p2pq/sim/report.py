"""One command for the report: every scenario in both modes, two experiments, every figure.

    p2pq sim --report docs/figures --seeds 200
    python -m p2pq.sim.report --out docs/figures --seeds 200

Writes summary.json / runs.csv / failures.json, the five figures, and a
README.md table under the output directory. docs/simulation.md explains
how to read each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from p2pq.core.types import Config
from p2pq.stats import percentile

from .export import write_sweeps
from .faults import leader_of
from .scenarios import SCENARIOS
from .sweep import Sweep, sweep
from .world import World

ELECTION_TYPES = ("election", "answer", "coordinator")
CLUSTER_SIZES = (3, 5, 7, 9, 12, 15, 20)
TIMEOUTS_S = (0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)
TIMELINE = ("chaos", 7)  # the run drawn on the timeline: busy, and every kind of fault


def election_cost(nodes: int, seed: int, config: Config | None = None) -> dict:
    """Crash the leader of an idle, settled cluster; count the messages until a new one leads."""
    world = World(nodes, seed, config or Config())
    world.run_until(3.0)
    before = dict(world.messages_by_type)
    old = leader_of(world)
    world.crash(old)
    crashed_at = world.now
    elected = lambda: any(kind == "leader_elected" and at > crashed_at  # noqa: E731
                          for at, _, kind, _ in world.history.notes)
    world.run_while(lambda: not elected(), crashed_at + 20.0, step_s=0.05)
    world.run_until(world.now + 0.5)  # late answers and coordinators still count
    sent = sum(world.messages_by_type.get(k, 0) - before.get(k, 0) for k in ELECTION_TYPES)
    return {"nodes": nodes, "seed": seed, "messages": sent}


def election_messages_experiment(seeds: int, sizes=CLUSTER_SIZES) -> list[dict]:
    return [election_cost(n, seed) for n in sizes for seed in range(seeds)]


def timeout_experiment(seeds: int, jobs: int, timeouts=TIMEOUTS_S) -> list[dict]:
    """Failover after the leader's machine loses power, for each failure-detection timeout
    (a killed process is found sooner: its machine refuses the dials that follow)."""
    points = []
    for timeout in timeouts:
        s = sweep("leader-power-off", range(seeds), jobs=jobs, config={"failure_timeout_s": timeout})
        times = sorted(x for r in s.results for x in r.report.failover_s)
        points.append({"failure_timeout_s": timeout, "failovers": len(times),
                       **{f"p{p}_s": round(percentile(times, p), 4) for p in (10, 50, 90)}})
    return points


def full_sweep(seeds: int, jobs: int, nodes: int, scenarios: list[str] | None = None,
               quiet: bool = False) -> list[Sweep]:
    """Every scenario in both modes, with one progress bar over all runs (unless quiet)."""
    from .command import run_sweeps
    combos = [(name, mode) for name in scenarios or SCENARIOS for mode in ("available", "quorum")]
    return run_sweeps(combos, range(seeds), nodes, None, jobs, quiet=quiet, keep=False)


def make_report(out: Path, *, seeds: int = 100, jobs: int = 1, nodes: int = 5, quiet: bool = False,
                scenarios: list[str] | None = None, sizes=CLUSTER_SIZES, timeouts=TIMEOUTS_S,
                experiment_seeds: int | None = None) -> dict:
    """Run everything and draw everything under `out`; returns the summary written to summary.json.

    The experiments use `experiment_seeds` seeds per point (default: a
    quarter of `seeds`, at least 10).
    """
    from . import figures
    from .runner import run
    started = time.perf_counter()
    say = (lambda *_: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    names = scenarios or list(SCENARIOS)
    say(f"sweeping {len(names)} scenarios x 2 modes x {seeds} seeds on {jobs} process(es)...")
    sweeps = full_sweep(seeds, jobs, nodes, names, quiet)
    say("experiments: election messages against cluster size, failover against timeout...")
    per_point = experiment_seeds or max(10, seeds // 4)
    sizes = election_messages_experiment(per_point, sizes)
    timeouts = timeout_experiment(per_point, jobs, timeouts)
    name, seed = TIMELINE
    kept = run(name, SCENARIOS[name], seed, nodes=nodes, keep_world=True)
    extra = {"command": f"p2pq sim --report {out} --seeds {seeds} --nodes {nodes}",
             "election_messages": sizes, "failover_vs_timeout": timeouts,
             "wall_seconds": round(time.perf_counter() - started, 1)}
    write_sweeps(out, sweeps, extra)
    summaries = [s.summary() for s in sweeps]
    paths = [figures.failover_cdf(sweeps, out / "failover_cdf.png"),
             figures.timeline(kept, out / "timeline.png"),
             figures.election_messages(sizes, out / "election_messages.png"),
             figures.failover_vs_timeout(timeouts, out / "failover_vs_timeout.png"),
             figures.available_vs_quorum(summaries, out / "available_vs_quorum.png")]
    (out / "README.md").write_text(markdown_table(summaries, extra))
    for p in paths:
        if p is not None:
            say(f"wrote {p}")
    return {"sweeps": summaries, **extra}


def markdown_table(summaries: list[dict], extra: dict) -> str:
    """The sweep results as the table a report can paste."""
    cols = ("scenario", "mode", "seeds", "acknowledged", "lost", "unexpected", "duplicated", "recovered",
            "refused", "multi_leader_s", "concurrent_ack_s", "stale_acks", "failover_p50_s",
            "failover_p99_s", "failing_runs")
    lines = ["# Simulation report", "", f"Made by `{extra['command']}` in {extra['wall_seconds']} s.",
             "See docs/simulation.md for how to read the figures.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summaries:
        lines.append("| " + " | ".join("-" if s.get(c) is None else str(s.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pq.sim.report", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    summary = make_report(args.out, seeds=args.seeds, jobs=args.jobs, nodes=args.nodes)
    failing = sum(s["failing_runs"] for s in summary["sweeps"])
    print(json.dumps({"failing_runs": failing, "out": str(args.out)}))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
