"""Power cuts of a whole cluster: every node's data dir on its own power-cut disk.

One run: N real `p2pq node` processes (LocalCluster), node i's --data-dir the
mount of its own disk (p2pq.testing.powercut), a recorded load of submits
(Workload), and `cuts` times, mid-load: SIGKILL every node, and once all are
dead, cut the power of every disk (nothing can write in between: the only
writers are dead), restart every node on what its disk kept, and go on.
At the end: stop the load, wait until nothing is queued or running, read the
leader's table and run the checker (p2pq.testing.history.judge).

An acknowledged task that the final table lacks is lost. Each one is
charged to the cut that ended the window in which it was acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import LocalCluster, wait_for
from .history import Recorder, Verdict, Workload, fetch_table, judge
from .netns import NetnsCluster, term_key
from .powercut import PowercutDisk


@dataclass
class CutRun:
    """What a run of cuts measured."""

    durability: str
    cuts: int
    acked_per_cut: list[int] = field(default_factory=list)   # acknowledged in the window each cut ended
    lost_per_cut: list[int] = field(default_factory=list)    # of those, missing from the final table
    lost_after: int = 0             # acknowledged after the last cut and missing (must be 0 in any mode)
    cut_at: list[float] = field(default_factory=list)         # wall-clock time of each cut
    term_regressions: int = 0       # cuts after which the first leader's term was not above every earlier one
    verdict: Verdict | None = None
    seconds: float = 0.0

    @property
    def acknowledged(self) -> int:
        return self.verdict.report.acknowledged if self.verdict else 0

    @property
    def lost(self) -> int:
        return self.verdict.report.lost if self.verdict else 0


class _NamedCluster(LocalCluster):
    """A LocalCluster whose nodes tell their tasks who they are (P2PQ_TEST_NODE, read by `mark`),
    so the checker can match every side effect with an attempt, as on NetnsCluster."""

    def _spawn(self, node) -> None:
        log = open(node.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "P2PQ_TEST_NODE": node.node_id}
        node.process = subprocess.Popen([sys.executable, "-m", "p2pq", *node.args], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()


@contextlib.contextmanager
def powercut_cluster(base_dir: Path, size: int, durability: str, node_args: list[str] | None = None):
    """`size` disks mounted at base_dir/node<i>, and a cluster whose data dirs are those mounts."""
    disks = [PowercutDisk(base_dir / f"disk{i + 1}", base_dir / f"node{i + 1}",
                          log_path=base_dir / f"disk{i + 1}.log") for i in range(size)]
    cluster = _NamedCluster(size, slots=2, base_dir=base_dir,
                           extra_args=["--durability", durability, *(node_args or [])])
    try:
        for disk in disks:
            disk.start()
        with cluster:
            yield cluster, disks
    finally:
        for disk in disks:
            disk.stop()


def cut_everything(cluster: LocalCluster, disks: list[PowercutDisk], recorder: Recorder) -> None:
    """The room goes dark: SIGKILL every node, wait for all to be dead, then cut every disk."""
    for node in cluster.nodes:
        if node.running:
            os.kill(node.process.pid, signal.SIGKILL)
    for node in cluster.nodes:
        recorder.fault("kill-9", "power cut", node=node.node_id)
        cluster.kill(node.index)  # reaps it, drops the client
    for disk in disks:
        disk.cut()


def restart_everything(cluster: LocalCluster, timeout_s: float = 60.0) -> None:
    for node in cluster.nodes:
        cluster.restart(node.index)
    cluster.wait_formed(timeout_s)


def wait_settled(cluster: LocalCluster, recorder: Recorder, timeout_s: float = 120.0) -> dict:
    """With the load stopped: nothing queued or running, every acknowledged task finished or absent.

    Absent, not present: in a mode that can lose tasks the lost ones never
    come. The state must hold on two looks in a row, half a second apart.
    """
    def leader_client():
        index, _ = wait_for(cluster.leader, 30, "one leader")
        return cluster.client(index, timeout_s=30)
    looks: list[bool] = []

    def settled():
        client = leader_client()
        counts = client.stats()["counts"]
        table = fetch_table(client)
        quiet = not counts.get("queued", 0) and not counts.get("running", 0) and all(
            table[t].state.terminal for t in recorder.acked_ids() if t in table)
        looks.append(quiet)
        return table if looks[-2:] == [True, True] else None
    return wait_for(settled, timeout_s, "the cluster to finish everything it holds", interval_s=0.5)


def run_cuts(durability: str, cuts: int, *, size: int = 3, rate_per_s: float = 40.0,
             acks_per_cut: tuple[int, int] = (20, 80), seed: int = 0, base_dir: Path | None = None,
             node_args: list[str] | None = None, on_cut=None) -> CutRun:
    """`cuts` power cuts of a `size`-node cluster under load; the checker's verdict at the end."""
    started = time.monotonic()
    rng = random.Random(seed)
    tmp = None
    if base_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="p2pq-powercut-")
        base_dir = Path(tmp.name)
    run = CutRun(durability, cuts)
    recorder = Recorder()
    log_path = base_dir / "runs.log"  # the side effects: not on a disk that loses power
    windows: list[set[str]] = []
    try:
        with powercut_cluster(base_dir, size, durability, node_args) as (cluster, disks):
            workload = Workload(cluster, recorder, log_path, rate_per_s=rate_per_s, task_s=(0.0, 0.05),
                                seed=seed).start()
            try:
                seen: set[str] = set()
                for k in range(cuts):
                    # The cut falls at a random point of the load: after this many more acknowledgments.
                    want = len(seen) + rng.randint(*acks_per_cut)
                    wait_for(lambda: len(recorder.acked_ids()) >= want, 60,
                             f"{want} acknowledged submits before cut {k + 1}")
                    cut_everything(cluster, disks, recorder)
                    run.cut_at.append(time.time())
                    acked = recorder.acked_ids()
                    windows.append(acked - seen)
                    seen = acked
                    restart_everything(cluster)
                    if on_cut is not None:
                        on_cut(k + 1, len(windows[-1]))
            finally:
                workload.stop()
            table = wait_settled(cluster, recorder)
            notes = NetnsCluster.notes(cluster)  # the same log lines as in namespaces
            run.verdict = judge(recorder, table, notes, log_path)
            run.term_regressions = term_regressions(notes, run.cut_at)
            present = set(table)
            run.acked_per_cut = [len(w) for w in windows]
            run.lost_per_cut = [len(w - present) for w in windows]
            run.lost_after = len(recorder.acked_ids() - seen - present)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.cleanup()
    run.seconds = time.monotonic() - started
    return run


def term_regressions(notes, cut_at: list[float]) -> int:
    """How many cuts were followed by a leader whose term is not above every term elected before (G3)."""
    elected = [(at, term_key(detail["term"])) for at, _, kind, detail in notes if kind == "leader_elected"]
    count = 0
    for at in cut_at:
        before = [term for t, term in elected if t < at]
        after = [term for t, term in elected if t > at]
        if before and after and after[0] <= max(before):
            count += 1
    return count


__all__ = ["term_regressions", "CutRun", "powercut_cluster", "cut_everything", "restart_everything", "wait_settled", "run_cuts"]
