"""`p2pq sim`: sweep a scenario over seeds in the deterministic simulator."""

from __future__ import annotations

import json
import sys

import click


class UserError(click.ClickException):
    """One clear line and exit code 1."""


@click.command()
@click.argument("scenario", required=False)
@click.option("--seeds", "n_seeds", type=click.IntRange(1), default=100, show_default=True,
              help="How many seeds to run (0..N-1 after --first-seed).")
@click.option("--first-seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Run exactly this seed (a replay); prints its trace hash.")
@click.option("--nodes", type=click.IntRange(1, 64), default=5, show_default=True)
@click.option("--mode", type=click.Choice(["available", "quorum"]), default="available", show_default=True,
              help="available: both sides of a partition serve. quorum: only a majority serves.")
@click.option("--trace", is_flag=True, help="With --seed: print the cluster's notes (elections, deaths).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--list", "list_scenarios", is_flag=True, help="List the scenarios and exit.")
def sim(scenario, n_seeds, first_seed, seed, nodes, mode, trace, as_json, list_scenarios):
    """Run SCENARIO in the deterministic simulator and check nothing was lost.

    The simulator runs the real protocol code (p2pq/core) over a simulated
    network with faults; a seed replays a run exactly. Every run ends with
    all faults healed, and the checker then counts attempted, acknowledged,
    lost, duplicated, unexpected and recovered tasks.

    \b
    Examples:
      p2pq sim --list
      p2pq sim isolate-leader --seeds 1000
      p2pq sim leader-crash --seed 17 --trace
    """
    from .scenarios import SCENARIOS
    if list_scenarios or scenario is None:
        for name, fn in SCENARIOS.items():
            click.echo(f"{name:28} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    if scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {scenario!r}; try one of: {', '.join(SCENARIOS)}")
    seeds = range(seed, seed + 1) if seed is not None else range(first_seed, first_seed + n_seeds)
    from . import sweep as sweep_mod
    result = _run_sweep(sweep_mod, scenario, seeds, mode, nodes, quiet=as_json, keep=trace)
    summary = result.summary()
    failures = [{"seed": r.seed, "problems": r.problems(), "replay": r.replay_command()}
                for r in result.failures]
    if as_json:
        click.echo(json.dumps({**summary, "failures": failures}, indent=2))
    else:
        _print_summary(summary, result)
        if trace and seed is not None:
            _print_trace(result.results[0])
    if failures:
        sys.exit(1)


def _run_sweep(sweep_mod, scenario, seeds, mode, nodes, *, quiet: bool, keep: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    if quiet or len(seeds) == 1:
        return sweep_mod.sweep(scenario, seeds, mode=mode, nodes=nodes, keep_world=keep)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[bad]} failing"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"{scenario} ({mode})", total=len(seeds), bad=0)
        bad = 0

        def advance(result) -> None:
            nonlocal bad
            bad += 0 if result.ok else 1
            progress.update(task, advance=1, bad=bad)
        return sweep_mod.sweep(scenario, seeds, mode=mode, nodes=nodes, on_result=advance)


def _print_summary(summary: dict, result) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{summary['scenario']}: {summary['seeds']} seed(s), {summary['nodes']} nodes, "
                        f"{summary['mode']} mode", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("attempted", "acknowledged", "lost", "unexpected", "duplicated", "recovered",
                "refused", "terms", "leaders_per_term_max", "priority_inversions", "failing_runs",
                "undrained_runs", "sim_seconds", "wall_seconds", "speedup"):
        value = summary.get(key)
        style = "bold red" if key in ("lost", "unexpected", "failing_runs") and value else ""
        table.add_row(key.replace("_", " "), f"[{style}]{value}[/]" if style else str(value))
    console = Console()
    console.print(table)
    if len(result.results) == 1:
        console.print(f"trace hash: {result.results[0].trace_hash}")
    for r in result.failures[:10]:
        console.print(f"[red]seed {r.seed}[/]: {'; '.join(r.problems())}\n  replay: {r.replay_command()}")


def _print_trace(result) -> None:
    for at, node, kind, detail in result.world.history.notes:
        if kind in ("node_joined",):
            continue
        click.echo(f"{at:9.3f}  {node:4} {kind:18} {json.dumps(detail, default=str)}")
    for at, kind, arg in result.world.history.faults:
        click.echo(f"{at:9.3f}  fault {kind} {arg if arg is not None else ''}")
