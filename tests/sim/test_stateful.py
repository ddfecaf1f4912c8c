"""A hypothesis rule-based test: submits, crashes, pauses, partitions and heals in any order.

Hypothesis draws a sequence of steps against a simulated 5-node cluster,
checks the invariants after every step, and at the end heals everything,
drains the queue and checks the history. A failing sequence is shrunk to a
short one and printed as Python steps, which replay it exactly (the world
is deterministic for a given sequence).

P2PQ_SIM_SEEDS scales the number of examples (default: 10 seeds -> 15 examples).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from p2pq.core.types import Config
from p2pq.sim.checker import check
from p2pq.sim.runner import heal_everything, settled
from p2pq.sim.workload import Clients, Workload
from p2pq.sim.world import World

NODES = [f"n{i}" for i in range(1, 6)]
EXAMPLES = max(5, int(os.environ.get("P2PQ_SIM_SEEDS", "10")) * 3 // 2)


class Cluster(RuleBasedStateMachine):
    """Five nodes; every rule is something a user or the network can do to them."""

    quorum = 0
    restart_at_heal = True

    def __init__(self) -> None:
        super().__init__()
        self.world = World(len(NODES), seed=0, config=Config(quorum=self.quorum))
        self.clients = Clients(self.world, Workload(stop_s=0.0, give_up_after_s=30.0))
        self.world.run_until(1.5)  # the first leader is elected by then

    @rule(client=st.integers(0, len(NODES) - 1), count=st.integers(1, 5),
          priority=st.sampled_from([1, 3, 5, 8]))
    def submit(self, client: int, count: int, priority: int) -> None:
        for _ in range(count):
            self.clients.all[client].submit(priority)

    @rule(node=st.sampled_from(NODES))
    def crash(self, node: str) -> None:
        self.world.crash(node)

    @rule(node=st.sampled_from(NODES))
    def restart(self, node: str) -> None:
        self.world.restart(node)

    @rule(node=st.sampled_from(NODES))
    def pause(self, node: str) -> None:
        self.world.pause(node)

    @rule(node=st.sampled_from(NODES))
    def resume(self, node: str) -> None:
        self.world.resume(node)

    @rule(side=st.lists(st.sampled_from(NODES), min_size=1, max_size=4, unique=True))
    def partition(self, side: list[str]) -> None:
        self.world.heal()
        self.world.partition(sorted(side), [n for n in NODES if n not in side])

    @rule()
    def heal(self) -> None:
        self.world.heal()

    @rule(seconds=st.floats(0.05, 3.0))
    def wait(self, seconds: float) -> None:
        self.world.run_until(self.world.now + seconds)

    @invariant()
    def one_leader_per_term(self) -> None:
        report = check(self.world.history, {}, quorum=bool(self.quorum), check_inversions=False)
        assert report.leaders_per_term_max <= 1, report.problems

    def teardown(self) -> None:
        """Heal, wait, drain; then nothing acknowledged may be missing and nothing invented."""
        world = self.world
        heal_everything(world, restart_crashed=self.restart_at_heal)
        drained = world.run_while(lambda: not settled(world, self.clients), world.now + 60.0)
        leaders = world.leaders()
        final = dict(world.nodes[leaders[0]].core.table.records) if len(leaders) == 1 else {}
        report = check(world.history, final, quorum=bool(self.quorum))
        assert report.lost == 0 and report.unexpected == 0, report.problems
        assert drained, "the queue did not drain after the heal"


class QuorumCluster(Cluster):
    quorum = len(NODES)


SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)


def test_any_mix_of_faults_loses_nothing_in_available_mode():
    run_state_machine_as_test(Cluster, settings=SETTINGS)


def test_any_mix_of_faults_loses_nothing_in_quorum_mode():
    run_state_machine_as_test(QuorumCluster, settings=SETTINGS)


def test_the_machine_finds_and_shrinks_a_protocol_that_acknowledges_before_replicating(monkeypatch):
    """A mutant that acknowledges at once must be caught, and the example shrunk to a few steps."""
    from p2pq.core import replication
    monkeypatch.setattr(replication, "_commit_index", lambda core: core.last_index)
    monkeypatch.setattr(replication, "replicate", lambda core: None)

    class NoRestart(Cluster):
        restart_at_heal = False  # a crashed leader's own disk must not be what saves the task
    mutant = settings(SETTINGS, max_examples=200, phases=[Phase.generate, Phase.shrink])
    with pytest.raises(AssertionError, match="lost") as failure:
        run_state_machine_as_test(NoRestart, settings=mutant)
    steps = [line for line in str(failure.value).splitlines() if line.startswith("state.")]
    assert len(steps) <= 10, steps  # shrunk: submit, wait, crash and the invariant checks between
