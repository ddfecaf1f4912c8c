"""A recorded run: a namespace cluster, a steady submit load, the faults applied, the final check."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from p2pq.client import Client

from ..cluster import wait_for
from ..history import Recorder, Verdict, Workload, judge, wait_drained
from ..netns import NetnsCluster, term_key

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
    def note_fault(self, kind: str, arg=None, **kw) -> float:
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.log(f"{time.time() - self.started_at:7.1f}s  {kind} {arg if arg is not None else ''}")
        at = self.recorder.fault(kind, arg, **kw)
        if kw.get("leader"):
            self.depositions.append((kind, at, kw["leader"][1]))
        return at

    def deposed(self, kind: str, leader: str, term: str) -> None:
        """A fault of `kind` took the leader away now: its failover is timed (failover_by_fault)."""
        at = time.time()
        self.depositions.append((kind, at, term))
        with self.recorder.lock:
            self.recorder.history.leader_losses.append((at, leader, term))

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
        at = self.note_fault("kill-9", node, node=node,
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
        at = self.note_fault("pause", node, leader=(node, leader_term) if leader_term else None)
        self.cluster.pause(i)
        return at

    def resume(self, i: int) -> float:
        self.recorder.fault("resume", self.cluster.nodes[i].node_id)
        self.cluster.resume(i)
        return time.time()

    def cut(self, kind: str, describe: str, apply: Callable[[], None],
            leader: tuple[str, str] | None = None) -> float:
        at = self.note_fault(kind, describe, leader=leader)
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
