"""Terminal tables for `p2pq sim` (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

ALARMS = ("lost", "unexpected", "failing_runs", "undrained_runs")
ONE_SWEEP = ("attempted", "acknowledged", "lost", "unexpected", "duplicated", "recovered", "refused",
             "gave_up", "terms", "leaders_per_term_max", "priority_inversions", "multi_leader_s",
             "concurrent_ack_s", "stale_acks", "failovers", "failover_p50_s", "failover_p99_s",
             "failovers_unfinished", "unavailable_s", "failing_runs", "undrained_runs", "sim_seconds",
             "wall_seconds", "jobs", "speedup", "speedup_per_run_median")
# (summary key, short header): one line per sweep must fit a terminal
MANY_SWEEPS = (("seeds", "seeds"), ("acknowledged", "acked"), ("lost", "lost"), ("unexpected", "unexp"),
               ("duplicated", "dup"), ("refused", "refused"), ("multi_leader_s", "2lead_s"),
               ("concurrent_ack_s", "2ack_s"), ("failover_p50_s", "fo_p50"), ("failing_runs", "failing"))


def _cell(key: str, value) -> str:
    text = "-" if value is None else str(value)
    return f"[bold red]{text}[/]" if key in ALARMS and value else text


def print_summary(sweeps: list) -> None:
    console = Console()
    if len(sweeps) == 1:
        _one(console, sweeps[0])
    else:
        if console.width < 110:
            console = Console(width=110)  # one sweep per line beats a squeezed table; lines may wrap
        _many(console, sweeps)
    for s in sweeps:
        for r in s.failures[:10]:
            console.print(f"[red]seed {r.seed}[/] {r.scenario} ({r.mode}): {'; '.join(r.problems())}\n"
                          f"  replay: {r.replay_command()}", soft_wrap=True)


def _one(console: Console, sweep) -> None:
    summary = sweep.summary()
    table = Table(title=f"{summary['scenario']}: {summary['seeds']} seed(s), {summary['nodes']} nodes, "
                        f"{summary['mode']} mode")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ONE_SWEEP:
        table.add_row(key.replace("_", " "), _cell(key, summary.get(key)))
    console.print(table)
    if len(sweep.results) == 1:
        console.print(f"trace hash: {sweep.results[0].trace_hash}")


def _many(console: Console, sweeps: list) -> None:
    table = Table(title=f"{len(sweeps)} sweeps, {sweeps[0].nodes} nodes", box=None, padding=(0, 1))
    table.add_column("scenario (mode)", no_wrap=True)
    for _, header in MANY_SWEEPS:
        table.add_column(header, justify="right", min_width=len(header))
    for s in sweeps:
        summary = s.summary()
        table.add_row(f"{summary['scenario']} ({summary['mode'][0]})",
                      *(_cell(k, summary.get(k)) for k, _ in MANY_SWEEPS))
    console.print(table)
    console.print("(a) available, (q) quorum mode. 2lead_s: time with more than one leader; 2ack_s: time "
                  "two terms both acknowledged; fo_p50: median failover (s). --json or --out DIR: all.")
