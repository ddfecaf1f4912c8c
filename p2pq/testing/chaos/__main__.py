"""`python -m p2pq.testing.chaos`: the command line, and the tables it prints."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import click

from p2pq.stats import percentile

from ..history import Verdict, unavailable_by_cause
from ..netns import unavailable_reason
from .measure import measure_cold_discovery, measure_failover, measurement_rows
from .nemesis import NEMESIS, chaos, runs_on
from .run import RETAIN_SAFE, Run


def verdict_rows(verdict: Verdict, run: Run, seconds: float) -> list[tuple[str, str]]:
    r = verdict.report
    rows = [(k.replace("_", " "), str(getattr(r, k))) for k in
            ("attempted", "acknowledged", "lost", "unexpected", "duplicated", "recovered", "executions",
             "refused", "terms", "leaders_per_term_max", "priority_inversions")]
    rows.append(("gave up", str(getattr(r, "gave_up", "-"))))
    rows.append(("runs (side effects)", str(verdict.runs)))
    rows.append(("runs not recorded", str(len(verdict.invisible_runs))))
    for kind, times in sorted(run.failover_by_fault().items()):
        rows.append((f"failover after {kind}: p50 / p99 / max s",
                     f"{percentile(times, 50):.2f} / {percentile(times, 99):.2f} / {max(times):.2f} (n={len(times)})"))
    if getattr(r, "latency_p50_s", None) is not None:
        rows.append(("submit latency p50 / p99 s", f"{r.latency_p50_s:.3f} / {r.latency_p99_s:.3f}"))
    if hasattr(r, "unavailable_s"):
        rows.append(("unavailable s (windows)", f"{r.unavailable_s:.1f} ({r.unavailable_windows})"))
        causes = unavailable_by_cause(run.recorder.history)
        rows.append(("unavailable after: s (windows)",
                     ", ".join(f"{kind} {s:g} ({n})" for kind, (s, n) in causes.items()) or "-"))
    rows.append(("faults", ", ".join(f"{k} {v}" for k, v in sorted(run.faults.items())) or "none"))
    rows.append(("run s / cold formation s", f"{seconds:.0f} / {run.formed_s:.2f}"))
    return rows


def print_table(title: str, rows: list[tuple[str, str]], problems: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in rows:
        bad = key in ("lost", "unexpected", "runs not recorded") and value not in ("0", "-")
        table.add_row(key, f"[bold red]{value}[/]" if bad else value)
    console = Console()
    console.print(table)
    for p in problems:
        console.print(f"[red]problem:[/] {p}")
    console.print("[green]no problem found[/]" if not problems else f"[red]{len(problems)} problem(s)[/]")


def _catalogue() -> str:
    lines = ["\b", "The fault catalogue (p2pq/faults.py, shared with the simulator):"]
    lines += [f"  {name:22} {shape.summary}" for name, shape in NEMESIS.items()]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=_catalogue())
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="How long to apply random faults.")
@click.option("--nodes", type=click.IntRange(3, 20), default=5, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the fault schedule (default: random, printed).")
@click.option("--rate", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Submits a second.")
@click.option("--faults", default=None, metavar="NAMES",
              help="Comma-separated shapes of the fault catalogue (listed below)  [default: every one that "
                   "this many nodes can take]")
@click.option("--node-arg", "node_args", multiple=True, metavar="FLAG",
              help="Pass a flag to every `p2pq node` (repeatable), e.g. --node-arg=--durability=memory.")
@click.option("--measure", is_flag=True, help="Measure failover, catch-up and cold discovery instead.")
@click.option("--kills", type=click.IntRange(1), default=20, show_default=True, help="With --measure.")
@click.option("--cold-starts", type=click.IntRange(0), default=5, show_default=True, help="With --measure.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JSON here.")
@click.option("--keep-logs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the nodes' logs here at the end.")
def main(minutes, nodes, seed, rate, faults, node_args, measure, kills, cold_starts, json_path, keep_logs):
    """Random faults (kill -9, SIGSTOP, partitions) against real p2pq nodes in network namespaces."""
    reason = unavailable_reason()
    if reason:
        raise click.ClickException(f"cannot build a namespace cluster: {reason}")
    names = [f.strip() for f in faults.split(",") if f.strip()] if faults else \
        [name for name in NEMESIS if runs_on(name, nodes)]
    unknown = [n for n in names if n not in NEMESIS]
    if unknown:
        raise click.ClickException(f"unknown fault(s) {unknown}; known: {', '.join(NEMESIS)}")
    lopsided = [n for n in names if not runs_on(n, nodes)]
    if lopsided:
        raise click.ClickException(f"{', '.join(lopsided)} would need one-way links with {nodes} nodes (a "
                                   "namespace cluster cuts links both ways); run it in the simulator")
    seed = seed if seed is not None else random.randrange(1 << 30)
    seconds = minutes * 60
    if not measure and rate * seconds > RETAIN_SAFE:
        rate = RETAIN_SAFE / seconds
        click.echo(f"rate lowered to {rate:.1f}/s so that no finished task is pruned before the check")
    log = lambda text: click.echo(text, err=True)  # noqa: E731
    click.echo(f"seed {seed}; {nodes} nodes; {'measure' if measure else f'{minutes:g} min of ' + ', '.join(names)}")
    run = Run(size=nodes, rate_per_s=rate, seed=seed, log=log, node_args=list(node_args),
              via=[0, 1, 2] if measure else None)
    result: dict = {"seed": seed, "nodes": nodes}
    try:
        run.start()
        log(f"{nodes} nodes formed by mDNS in {run.formed_s:.2f} s ({run.cluster.subnet}.0/24, {run.cluster.tag})")
        started = time.monotonic()
        if measure:
            m = measure_failover(run, kills, log)
        else:
            chaos(run, seconds, random.Random(seed), names)
        verdict = run.finish()
        elapsed = time.monotonic() - started
    except BaseException:
        if keep_logs is not None and run.cluster is not None:
            _copy_logs(run, keep_logs)
        run.close()
        raise
    if keep_logs is not None:
        _copy_logs(run, keep_logs)
    run.close()
    rows = verdict_rows(verdict, run, elapsed)
    result["checker"] = verdict.report.to_dict()
    result["problems"] = verdict.problems
    result["faults"] = run.faults
    result["unavailable_by_cause"] = unavailable_by_cause(run.recorder.history)
    if measure:
        m.cold_formed_s = measure_cold_discovery(cold_starts, nodes, log)
        rows += measurement_rows(m)
        result["measurements"] = m.__dict__
    title = (f"p2pq chaos: {minutes:g} min, {nodes} nodes in network namespaces, seed {seed}" if not measure
             else f"p2pq measurements: {kills} leader kills, {nodes} nodes in network namespaces")
    print_table(title, rows, verdict.problems)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2, default=str))
    sys.exit(0 if verdict.ok else 1)


def _copy_logs(run: Run, target: Path) -> None:
    import shutil
    target.mkdir(parents=True, exist_ok=True)
    for path in run.cluster.base_dir.glob("*.log"):
        shutil.copy(path, target / path.name)


if __name__ == "__main__":
    main()
