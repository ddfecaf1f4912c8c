"""`p2pq sim`: sweep scenarios over seeds in the deterministic simulator."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

MODES = ("available", "quorum")


class UserError(click.ClickException):
    """One clear line and exit code 1."""


@click.command()
@click.argument("scenario", required=False)
@click.option("--seeds", "n_seeds", type=click.IntRange(1), default=100, show_default=True,
              help="How many seeds to run (first-seed .. first-seed+N-1).")
@click.option("--first-seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Run exactly this seed (a replay); prints its trace hash.")
@click.option("--nodes", type=click.IntRange(1, 64), default=5, show_default=True)
@click.option("--mode", type=click.Choice(["available", "quorum", "both"]), default="available",
              show_default=True, help="available: both sides of a partition serve. quorum: only a majority.")
@click.option("--election", type=click.Choice(["classic", "ranked"]), default="classic", show_default=True,
              help="classic: every node elects when the leader dies. ranked: a node that knows a live node "
                   "above it waits for that node instead (O(n) messages).")
@click.option("--duration", "duration_s", type=click.FloatRange(3.0), default=None,
              help="Seconds of faults before the heal (default: the scenario's own).")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Worker processes (default: one per CPU).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write summary.json, runs.csv, failures.json and figures (matplotlib) here.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep every scenario in both modes, run the experiments, draw every figure here.")
@click.option("--trace", is_flag=True, help="With --seed: print the cluster's notes (elections, deaths).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--list", "list_scenarios", is_flag=True, help="List the scenarios and exit.")
def sim(scenario, n_seeds, first_seed, seed, nodes, mode, election, duration_s, jobs, out_dir, report_dir, trace,
        as_json, list_scenarios):
    """Run SCENARIO in the deterministic simulator and check nothing was lost.

    The simulator runs the real protocol code (p2pq/core) over a simulated
    network with faults; a seed replays a run exactly. Every run ends with
    all faults healed; the checker then counts attempted, acknowledged,
    lost, duplicated, unexpected and recovered tasks, split-brain time and
    failover times. SCENARIO is a name (see --list), `all`, or a scenario
    file (simulations/example_custom.py). Exit code 1 if any run failed.

    \b
    Examples:
      p2pq sim --list
      p2pq sim isolate-leader --seeds 1000
      p2pq sim all --mode both --seeds 1000 --out out/sweep
      p2pq sim leader-crash --seed 17 --trace
      p2pq sim --report docs/figures --seeds 200
    """
    from . import scenarios
    jobs = jobs or os.cpu_count() or 1
    if report_dir is not None:
        from .report import make_report
        summary = make_report(report_dir, seeds=n_seeds, jobs=jobs, nodes=nodes, quiet=as_json)
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        sys.exit(1 if any(s["failing_runs"] for s in summary["sweeps"]) else 0)
    if list_scenarios or scenario is None:
        for name, s in scenarios.SCENARIOS.items():
            click.echo(f"{name:36} {s.summary}")
        return
    names = _resolve(scenario)
    seeds = range(seed, seed + 1) if seed is not None else range(first_seed, first_seed + n_seeds)
    modes = MODES if mode == "both" else (mode,)
    sweeps = run_sweeps([(n, m) for n in names for m in modes], seeds, nodes, duration_s, jobs,
                         quiet=as_json, keep=trace and seed is not None,
                         config={"election": election} if election != "classic" else None)
    _report(sweeps, as_json, trace and seed is not None, out_dir)
    if any(s.failures for s in sweeps):
        sys.exit(1)


def _resolve(scenario: str) -> list[str]:
    """Scenario names (or file paths) to sweep; a clear error for an unknown one."""
    from . import scenarios
    if scenario == "all":
        return list(scenarios.SCENARIOS)
    try:
        found = scenarios.get(scenario)
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; try one of: {', '.join(scenarios.SCENARIOS)} "
                        "(or a path to a scenario file)") from None
    return [found.source or found.name]


def run_sweeps(combos, seeds, nodes, duration_s, jobs, *, quiet: bool, keep: bool,
               config: dict | None = None) -> list:
    """Every (scenario, mode) over the seeds, with one progress bar over all runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .sweep import sweep
    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description:40}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[bad]} failing"), TimeRemainingColumn())
    out = []
    with Progress(*columns, console=console, transient=True, disable=quiet or len(seeds) == 1) as bar:
        task = bar.add_task("", total=len(seeds) * len(combos), bad=0)
        bad = 0

        def advance(result) -> None:
            nonlocal bad
            if not result.ok:
                bad += 1
                if not quiet and len(seeds) > 1:  # say how to replay it as soon as it fails
                    bar.console.print(f"[red]FAIL[/] {result.scenario} seed {result.seed} ({result.mode}): "
                                      f"{'; '.join(result.problems())}\n  replay: {result.replay_command()}",
                                      soft_wrap=True)  # a replay command must stay one copyable line
            bar.update(task, advance=1, bad=bad)
        for name, mode in combos:
            bar.update(task, description=f"{name} ({mode})")
            out.append(sweep(name, seeds, mode=mode, nodes=nodes, on_result=advance, jobs=jobs,
                             keep_world=keep, duration_s=duration_s, config=config))
    return out


def _report(sweeps, as_json: bool, trace: bool, out_dir: Path | None) -> None:
    from .export import failure_entry, write_sweeps
    if out_dir is not None:
        write_sweeps(out_dir, sweeps)
        _draw(out_dir, sweeps, quiet=as_json)
    failures = [failure_entry(r) for s in sweeps for r in s.failures]
    if as_json:
        doc = ({**sweeps[0].summary(), "failures": failures} if len(sweeps) == 1
               else {"sweeps": [s.summary() for s in sweeps], "failures": failures})
        click.echo(json.dumps(doc, indent=2))
        return
    from .tables import print_summary
    print_summary(sweeps)
    if trace:
        _print_trace(sweeps[0].results[0])


def _draw(out_dir: Path, sweeps, *, quiet: bool) -> None:
    try:
        from .figures import draw_sweep_figures
    except ImportError:
        click.echo("figures skipped: matplotlib is not installed (pip install 'p2pq[report]')", err=True)
        return
    for path in draw_sweep_figures(out_dir, sweeps):
        if not quiet:
            click.echo(f"wrote {path}", err=True)


def _print_trace(result) -> None:
    events = [(at, f"{node:4} {kind:18} {json.dumps(detail, default=str)}")
              for at, node, kind, detail in result.world.history.notes if kind != "node_joined"]
    events += [(at, f"fault {kind} {arg if arg is not None else ''}")
               for at, kind, arg in result.world.history.faults]
    for at, text in sorted(events, key=lambda e: e[0]):
        click.echo(f"{at:9.3f}  {text}")


def run_file_main(name: str) -> None:
    """`python simulations/NAME.py [options]` is `p2pq sim NAME [options]`."""
    sim.main(args=[name, *sys.argv[1:]], prog_name=f"simulations/{name.replace('-', '_')}.py")
