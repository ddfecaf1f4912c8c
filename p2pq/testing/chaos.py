"""Random faults against a real cluster in network namespaces, then the checker's table.

    sudo .venv/bin/python -m p2pq.testing.chaos --minutes 10
    sudo .venv/bin/python -m p2pq.testing.chaos --measure --kills 20

A run builds a 5-node NetnsCluster (found by mDNS alone), starts a steady
recorded submit load from clients that ride over failures, and then, until
the time is up, applies one fault at a time (the nemesis), heals it, and
waits for the cluster to settle: one leader agreed by every node, and the
followers caught up (commit reached the log's end). Faults: kill -9 of the
leader or of any node (restarted later, empty-handed), SIGSTOP of the leader
for a while (it wakes up deposed), partitions (isolate the leader or a node,
two halves, a bridge), and isolating the follower and then killing the
leader. At the end everything heals, the load stops, the queue drains, and
the final table and the history go through p2pq.sim.checker.check, the same
checker the simulator uses. The exit code is 1 when the checker found a
problem (a lost or unexpected task, two leaders in one term, a run no
attempt accounts for) or the cluster did not settle after a fault.

`--measure` instead kills the leader again and again under load and reports
failover time (kill -> first submit acknowledged under another term), the
time a restarted node takes to catch up (and, being the highest, lead
again), and the time 5 nodes take to find each other and agree on a leader
from a cold start.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from p2pq.client import Client
from p2pq.stats import percentile

from .cluster import wait_for
from .history import Recorder, Verdict, Workload, judge, unavailable_by_cause, wait_drained
from .netns import NetnsCluster, term_key, unavailable_reason, wait_port

SETTLE_S = 60.0
RETAIN_SAFE = 9_000  # stay under the leader's retention (10,000 finished tasks) so nothing is pruned


@dataclass
class Run:
    """A recorded run: cluster, load, and the faults applied to it."""

    size: int = 5
    rate_per_s: float = 10.0
    workers: int = 4
    seed: int = 0
    via: list[int] | None = None
    slots: int = 2
    node_args: list[str] = field(default_factory=list)  # more `p2pq node` flags, e.g. --durability memory
    log: Callable[[str], None] = lambda text: None
    cluster: NetnsCluster | None = None
    recorder: Recorder = field(default_factory=Recorder)
    workload: Workload | None = None
    problems: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    depositions: list[tuple[str, float, str]] = field(default_factory=list)  # (fault, at, deposed term)
    formed_s: float = 0.0
    started_at: float = 0.0

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, load: bool = True) -> Run:
        self.cluster = NetnsCluster(self.size, slots=self.slots, extra_args=list(self.node_args))
        t0 = time.monotonic()
        try:
            self.cluster.start(wait=False)
            self.cluster.wait_formed(SETTLE_S)
        except BaseException:
            self.close()
            raise
        self.formed_s = time.monotonic() - t0
        self.started_at = time.time()
        if load:
            self.workload = Workload(self.cluster, self.recorder, self.log_path, rate_per_s=self.rate_per_s,
                                     workers=self.workers, seed=self.seed,
                                     via=(lambda: list(self.via)) if self.via else None).start()
        return self

    def close(self) -> None:
        if self.workload is not None:
            self.workload.stop(timeout_s=5)
        if self.cluster is not None:
            self.cluster.stop()

    @property
    def log_path(self) -> Path:
        return self.cluster.base_dir / "runs.log"

    # -- looking --------------------------------------------------------------------
    def leader(self, timeout_s: float = SETTLE_S) -> tuple[int, str]:
        """The leader every running node agrees on."""
        return self.cluster.wait_formed(timeout_s)

    def settle(self, after: str, timeout_s: float = SETTLE_S) -> bool:
        """Wait for one agreed leader and caught-up followers; a problem if it does not come."""
        start = time.monotonic()
        try:
            index, _ = self.leader(timeout_s)
            self.wait_replicated(index, max(5.0, timeout_s - (time.monotonic() - start)))
            return True
        except TimeoutError as exc:
            self.problems.append(f"did not settle within {timeout_s:g} s after {after}: {exc}")
            self.log(f"  !! {self.problems[-1]}")
            return False

    def wait_replicated(self, via: int, timeout_s: float) -> None:
        """Commit reaches the log's end as it was when we started waiting (same term)."""
        client = self.cluster.probe(via)
        target: dict = {}

        def caught_up():
            stats = client.stats()
            if target.get("term") != stats["term"]:
                target.update(term=stats["term"], index=stats["last_index"])
            return stats["commit"] >= target["index"]
        wait_for(caught_up, timeout_s, "the followers to catch up", interval_s=0.1)

    def follower(self, leader: int) -> int | None:
        view = self.cluster.view(leader)
        followers = view.get("followers") or []
        return self.cluster.node_index(followers[0]) if followers else None

    # -- faults ---------------------------------------------------------------------
    def _fault(self, kind: str, arg=None, **kw) -> float:
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.log(f"{time.time() - self.started_at:7.1f}s  {kind} {arg if arg is not None else ''}")
        at = self.recorder.fault(kind, arg, **kw)
        if kw.get("leader"):
            self.depositions.append((kind, at, kw["leader"][1]))
        return at

    def failover_by_fault(self) -> dict[str, list[float]]:
        """Per fault kind that deposed a leader: seconds until a newer term acknowledged a submit."""
        out: dict[str, list[float]] = {}
        for kind, at, term in self.depositions:
            first = self.recorder.first_ack_after(at, lambda t, old=term: term_key(t) > term_key(old))
            if first is not None:
                out.setdefault(kind, []).append(first - at)
        return out

    def kill(self, i: int, leader_term: str | None = None) -> float:
        node = self.cluster.nodes[i].node_id
        at = self._fault("kill-9", node, node=node,
                         leader=(node, leader_term) if leader_term else None)
        self.cluster.kill(i, signal.SIGKILL)
        return at

    def restart(self, i: int) -> float:
        self.recorder.fault("restart", self.cluster.nodes[i].node_id)
        at = time.time()
        self.cluster.restart(i)
        return at

    def pause(self, i: int, leader_term: str | None = None) -> float:
        node = self.cluster.nodes[i].node_id
        at = self._fault("pause", node, leader=(node, leader_term) if leader_term else None)
        self.cluster.pause(i)
        return at

    def resume(self, i: int) -> float:
        self.recorder.fault("resume", self.cluster.nodes[i].node_id)
        self.cluster.resume(i)
        return time.time()

    def cut(self, kind: str, describe: str, apply: Callable[[], None],
            leader: tuple[str, str] | None = None) -> float:
        at = self._fault(kind, describe, leader=leader)
        apply()
        return at

    def heal_all(self) -> None:
        """Heal the network, wake the paused, restart the dead."""
        self.cluster.heal()
        for node in self.cluster.nodes:
            if node.paused:
                self.resume(node.index)
            if not node.running:
                self.restart(node.index)
        self.recorder.fault("heal", None)

    # -- the end ----------------------------------------------------------------------
    def finish(self, drain_s: float = 180.0) -> Verdict:
        """Heal, stop the load, drain, and check the history against the final table."""
        self.heal_all()
        self.settle("the final heal")
        if self.workload is not None:
            self.workload.stop()
        leader, _ = self.leader()
        with Client(self.cluster.nodes[leader].address, cluster_dir=self.cluster.cluster_dir,
                    timeout_s=30) as client:
            try:
                final = wait_drained(client, self.recorder, drain_s)
            except TimeoutError as exc:
                self.problems.append(str(exc))
                from .history import fetch_table
                final = fetch_table(client)
        after = self.cluster.leaders_now()
        if len(after) != 1:
            self.problems.append(f"{len(after)} nodes lead after the heal: {after}")
        verdict = judge(self.recorder, final, self.cluster.notes(), self.log_path)
        verdict.report.problems.extend(self.problems)
        return verdict


# -- the nemesis ---------------------------------------------------------------------------
def fault_kill_leader(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    run.kill(leader, term)
    time.sleep(rng.uniform(2, 6))


def fault_kill_any(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    victim = rng.randrange(run.size)
    run.kill(victim, term if victim == leader else None)
    time.sleep(rng.uniform(2, 6))


def fault_pause_leader(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    pause_s = rng.choice([rng.uniform(0.3, 0.9), rng.uniform(1.5, 6)])  # under or beyond the timeout
    run.pause(leader, term if pause_s > 1.0 else None)  # a short pause deposes nobody
    time.sleep(pause_s)


def fault_isolate_leader(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    node = run.cluster.nodes[leader].node_id
    run.cut("isolate-leader", node, lambda: run.cluster.isolate(leader), leader=(node, term))
    time.sleep(rng.uniform(2, 8))


def fault_isolate_any(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    victim = rng.randrange(run.size)
    node = run.cluster.nodes[victim].node_id
    run.cut("isolate-node", node, lambda: run.cluster.isolate(victim),
            leader=(node, term) if victim == leader else None)
    time.sleep(rng.uniform(2, 8))


def fault_halves(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    nodes = list(range(run.size))
    rng.shuffle(nodes)
    a, b = sorted(nodes[:run.size // 2]), sorted(nodes[run.size // 2:])
    names = [[run.cluster.nodes[i].node_id for i in side] for side in (a, b)]
    run.cut("halves", f"{names[0]} | {names[1]}", lambda: run.cluster.partition(a, b))
    time.sleep(rng.uniform(2, 8))


def fault_bridge(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    nodes = list(range(run.size))
    rng.shuffle(nodes)
    middle, rest = nodes[0], nodes[1:]
    left, right = sorted(rest[:len(rest) // 2]), sorted(rest[len(rest) // 2:])
    name = lambda i: run.cluster.nodes[i].node_id  # noqa: E731
    run.cut("bridge", f"{[name(i) for i in left]} - {name(middle)} - {[name(i) for i in right]}",
            lambda: run.cluster.bridge(middle, left, right))
    time.sleep(rng.uniform(2, 8))


def fault_follower_then_leader(run: Run, rng: random.Random) -> None:
    leader, term = run.leader()
    follower = run.follower(leader)
    if follower is None:
        return
    node = run.cluster.nodes[follower].node_id
    run.cut("isolate-follower", node, lambda: run.cluster.isolate(follower))
    # The leader notices the follower is gone and replicates to the next one.
    wait_for(lambda: run.follower(leader) not in (None, follower), 15, "a new follower")
    time.sleep(rng.uniform(0.5, 2))
    run.kill(leader, term)
    time.sleep(rng.uniform(2, 6))


NEMESIS: dict[str, Callable[[Run, random.Random], None]] = {
    "kill-leader": fault_kill_leader,
    "kill-any": fault_kill_any,
    "pause-leader": fault_pause_leader,
    "isolate-leader": fault_isolate_leader,
    "isolate-node": fault_isolate_any,
    "halves": fault_halves,
    "bridge": fault_bridge,
    "follower-then-leader": fault_follower_then_leader,
}


def chaos(run: Run, seconds: float, rng: random.Random, names: list[str]) -> None:
    """One fault at a time until the time is up; each is healed and settled before the next."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = rng.choice(names)
        try:
            NEMESIS[name](run, rng)
        except TimeoutError as exc:
            run.problems.append(f"{name}: {exc}")
            run.log(f"  !! {run.problems[-1]}")
        run.heal_all()
        run.settle(name)
        time.sleep(rng.uniform(0.5, 2.0))


# -- measurements ----------------------------------------------------------------------------
@dataclass
class Measurements:
    failover_s: list[float] = field(default_factory=list)
    port_up_s: list[float] = field(default_factory=list)       # restart -> accepting connections
    rejoined_s: list[float] = field(default_factory=list)      # restart -> alive in the leader's view
    caught_up_s: list[float] = field(default_factory=list)     # restart -> leads again (after its snapshot)
    cold_formed_s: list[float] = field(default_factory=list)   # spawn of 5 -> one agreed leader


def measure_failover(run: Run, kills: int, log: Callable[[str], None]) -> Measurements:
    """Kill the leader `kills` times under load from clients on nodes that are never killed."""
    m = Measurements()
    for k in range(kills):
        run.settle(f"round {k}")
        leader, term = run.leader()
        killed_at = run.kill(leader, term)
        first = wait_for(lambda: run.recorder.first_ack_after(killed_at, lambda t: t != term),
                         30, "a submit acknowledged under a new term", interval_s=0.01)
        m.failover_s.append(first - killed_at)
        run.leader()
        restarted_at = run.restart(leader)
        node = run.cluster.nodes[leader]
        wait_port(node.host, node.port, 30)
        m.port_up_s.append(time.time() - restarted_at)
        m.rejoined_s.append(_wait_rejoined(run, leader, restarted_at))
        m.caught_up_s.append(_wait_leads_again(run, leader, term, restarted_at))
        log(f"kill {k + 1}/{kills} of {node.node_id} ({term}): failover {m.failover_s[-1]:.3f} s; "
            f"restarted: port {m.port_up_s[-1]:.2f} s, rejoined {m.rejoined_s[-1]:.2f} s, "
            f"leads again {m.caught_up_s[-1]:.2f} s")
    return m


def _wait_rejoined(run: Run, index: int, since: float) -> float:
    node_id = run.cluster.nodes[index].node_id

    def seen_by_all():
        others = [i for i in run.cluster.running_indexes() if i != index]
        return all(any(m["node"] == node_id and m["alive"] for m in run.cluster.view(i)["members"])
                   for i in others)
    wait_for(seen_by_all, 60, f"every other node to see {node_id} alive again", interval_s=0.02)
    return time.time() - since


def _wait_leads_again(run: Run, index: int, old_term: str, since: float) -> float:
    node_id = run.cluster.nodes[index].node_id

    def leads():
        for at, node, kind, detail in run.cluster.notes():
            if node == node_id and kind == "leader_elected" and at >= since \
                    and term_key(detail["term"]) > term_key(old_term):
                return at
        return None
    return wait_for(leads, 60, f"{node_id} to lead again", interval_s=0.05) - since


def measure_cold_discovery(times: int, size: int, log: Callable[[str], None]) -> list[float]:
    out = []
    for k in range(times):
        cluster = NetnsCluster(size)
        try:
            t0 = time.monotonic()
            cluster.start(wait=False)
            cluster.wait_formed(SETTLE_S)
            out.append(time.monotonic() - t0)
            log(f"cold start {k + 1}/{times}: {size} nodes formed by mDNS in {out[-1]:.2f} s")
        finally:
            cluster.stop()
    return out


# -- output ------------------------------------------------------------------------------------
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


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="How long to apply random faults.")
@click.option("--nodes", type=click.IntRange(3, 20), default=5, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the fault schedule (default: random, printed).")
@click.option("--rate", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Submits a second.")
@click.option("--faults", default=",".join(NEMESIS), show_default=True, help="Comma-separated fault kinds.")
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
    names = [f.strip() for f in faults.split(",") if f.strip()]
    unknown = [n for n in names if n not in NEMESIS]
    if unknown:
        raise click.ClickException(f"unknown fault(s) {unknown}; known: {', '.join(NEMESIS)}")
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


def measurement_rows(m: Measurements) -> list[tuple[str, str]]:
    def dist(values: list[float]) -> str:
        if not values:
            return "-"
        return (f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} / "
                f"{min(values):.2f}..{max(values):.2f} (n={len(values)})")
    return [("failover s p50 / p99 / range", dist(m.failover_s)),
            ("restart: port open s", dist(m.port_up_s)),
            ("restart: rejoined s", dist(m.rejoined_s)),
            ("restart: caught up, leads s", dist(m.caught_up_s)),
            ("cold start: 5 formed s", dist(m.cold_formed_s))]


def _copy_logs(run: Run, target: Path) -> None:
    import shutil
    target.mkdir(parents=True, exist_ok=True)
    for path in run.cluster.base_dir.glob("*.log"):
        shutil.copy(path, target / path.name)


if __name__ == "__main__":
    main()
