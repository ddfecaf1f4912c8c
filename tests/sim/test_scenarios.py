"""The protocol under faults, over many seeds of the deterministic simulator.

P2PQ_SIM_SEEDS raises the number of seeds (default 200 per scenario).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from p2pq.sim.runner import run
from p2pq.sim.scenarios import SCENARIOS

SEEDS = int(os.environ.get("P2PQ_SIM_SEEDS", "200"))
QUORUM_SEEDS = max(20, SEEDS // 4)


def sweep(name: str, seeds: int, mode: str = "available") -> list:
    failures = []
    for seed in range(seeds):
        result = run(name, SCENARIOS[name], seed, mode=mode)
        if not result.ok or result.report.leaders_per_term_max > 1:
            failures.append(f"seed {seed}: {'; '.join(result.problems())}\n"
                            f"  replay: {result.replay_command()}")
    return failures


@pytest.mark.parametrize("name", ["leader-crash", "follower-crash", "follower-then-leader-crash",
                                  "isolate-leader", "seed-discovery"])
def test_nothing_acknowledged_is_lost_in_available_mode(name):
    failures = sweep(name, SEEDS)
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize("name", ["leader-crash", "isolate-leader", "follower-then-leader-crash"])
def test_nothing_acknowledged_is_lost_in_quorum_mode(name):
    failures = sweep(name, QUORUM_SEEDS, mode="quorum")
    assert not failures, "\n".join(failures[:5])


def test_a_run_does_real_work_and_fails_over():
    result = run("leader-crash", SCENARIOS["leader-crash"], 3)
    report = result.report
    assert report.acknowledged > 50 and report.lost == 0
    assert report.terms >= 2  # the crash forced a new leadership
    assert result.drained


def test_with_seed_discovery_gossip_converges_on_one_leader_quickly():
    """Nodes that know each other only through n1 must not fence each other forever."""
    def calm_seeded(world):
        pass
    calm_seeded.world_options = {"discovery": "seed"}
    for seed in range(20):
        result = run("calm-seeded", calm_seeded, seed)
        assert result.ok
        assert result.report.terms <= 3, f"seed {seed}: {result.report.terms} terms in a calm run"


def test_the_same_seed_gives_the_same_trace():
    a = run("isolate-leader", SCENARIOS["isolate-leader"], 11)
    b = run("isolate-leader", SCENARIOS["isolate-leader"], 11)
    c = run("isolate-leader", SCENARIOS["isolate-leader"], 12)
    assert a.trace_hash == b.trace_hash
    assert a.trace_hash != c.trace_hash


def test_the_same_seed_gives_the_same_trace_after_a_python_restart():
    code = ("from p2pq.sim.runner import run; from p2pq.sim.scenarios import SCENARIOS; "
            "print(run('leader-crash', SCENARIOS['leader-crash'], 5).trace_hash)")
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout.strip() for _ in range(2)}
    assert outputs == {run("leader-crash", SCENARIOS["leader-crash"], 5).trace_hash}


def test_the_checker_catches_a_leader_that_acknowledges_before_replicating(monkeypatch):
    """A mutant protocol (acknowledge without replicating) must lose tasks somewhere."""
    from p2pq.core.replication import ReplicationMixin
    from p2pq.sim.scenarios import leader_of
    from p2pq.sim.world import LinkModel

    def crash_for_good(world):
        world.call_at(3.0 + world.rng.random(), lambda: world.crash(leader_of(world)))

    slow = LinkModel(latency_s=lambda r: r.uniform(0.02, 0.06))
    honest = sum(run("crash", crash_for_good, seed, link=slow).report.lost for seed in range(20))
    monkeypatch.setattr(ReplicationMixin, "_commit_index", lambda self: self.last_index)
    monkeypatch.setattr(ReplicationMixin, "_replicate", lambda self: None)
    mutant = sum(run("crash", crash_for_good, seed, link=slow).report.lost for seed in range(20))
    assert honest == 0 and mutant > 0
