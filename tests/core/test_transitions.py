"""The role table is exact: every edge in TRANSITIONS is taken, and every other move raises."""

from __future__ import annotations

import itertools

import pytest

from helpers import make_leader, node, recv
from p2pq.core.events import ShutdownRequested, TimerFired
from p2pq.core.messages import Answer, Coordinator, Heartbeat, Reject
from p2pq.core.node import NodeCore
from p2pq.core.types import TRANSITIONS, Config, IllegalTransition, Role, Term, Trigger


@pytest.fixture
def taken(monkeypatch):
    edges: set[tuple[Role, Role, Trigger]] = set()
    become = NodeCore.become

    def recording(self, role, trigger):
        edges.add((self.role, role, trigger))
        become(self, role, trigger)
    monkeypatch.setattr(NodeCore, "become", recording)
    return edges


def leaving(core: NodeCore, now: float) -> None:
    core.handle(ShutdownRequested(), now)
    assert core.role is Role.MEMBER and core.stopping


def test_every_edge_of_the_role_table_is_taken(taken):
    from p2pq.sim.runner import run
    from p2pq.sim.scenarios import SCENARIOS
    for name in ("leader-crash", "isolate-leader", "bridge", "pause-leader", "seed-discovery", "one-way"):
        for seed, quorum in itertools.product(range(3), (0, 5)):
            run(name, SCENARIOS[name], seed, mode="quorum" if quorum else "available", config=Config(quorum=quorum))
    for seed in range(3):  # the ranked election defers to a live node above
        run("leader-crash", SCENARIOS["leader-crash"], seed, config=Config(election="ranked"))
    # Leaving, from each role but member.
    electing = node("n1", 1, {"n2": 2})
    electing.handle(TimerFired("tick"), 1.3)
    assert electing.role is Role.ELECTING
    leaving(electing, 1.4)
    waiting = node("n1", 1, {"n2": 2})
    waiting.handle(TimerFired("tick"), 1.3)
    recv(waiting, "n2", Answer(Term(0, "")), 1.35)
    assert waiting.role is Role.WAITING
    leaving(waiting, 1.4)
    gathering = node("n3", 3, {"n1": 1, "n2": 2})
    gathering.handle(TimerFired("tick"), 1.3)
    assert gathering.role is Role.GATHERING
    leaving(gathering, 1.4)
    leader = node("n3", 3, {"n1": 1})
    make_leader(leader)
    leaving(leader, 2.0)
    # A gatherer fenced by a newer term of a lower node bullies it at once.
    fenced = node("n3", 3, {"n1": 1, "n2": 2})
    fenced.handle(TimerFired("tick"), 1.3)
    recv(fenced, "n1", Reject(Term(fenced.term.number + 1, "n1")), 1.35)
    assert fenced.role is Role.ELECTING or fenced.role is Role.GATHERING
    # An election in vain: the leader of our own term speaks after all.
    member = node("n1", 1, {"n2": 2, "n3": 3})
    recv(member, "n2", Coordinator(Term(1, "n2"), 2), 0.1)
    member.handle(TimerFired("tick"), 1.5)  # n2 silent for a failure timeout
    assert member.role is Role.ELECTING and member.term == Term(1, "n2")
    recv(member, "n2", Heartbeat(Term(1, "n2"), 2, (), (), False), 1.55)
    assert member.role is Role.MEMBER and member.leader == "n2"
    # A gatherer fenced by the newer term of a higher node steps down and waits for it.
    lower = node("n2", 2, {"n1": 1, "n3": 3})
    lower.peers["n3"].alive = False
    lower.handle(TimerFired("tick"), 1.3)
    assert lower.role is Role.GATHERING
    recv(lower, "n1", Reject(Term(lower.term.number + 1, "n3")), 1.35)
    assert lower.role is Role.MEMBER
    table = {(a, b, t) for (a, b), triggers in TRANSITIONS.items() for t in triggers}
    assert taken == table, f"never taken: {sorted(table - taken, key=str)}; not in the table: {taken - table}"


def test_every_other_move_raises():
    for (a, b), trigger in itertools.product(itertools.product(Role, Role), Trigger):
        core = node("n1", 1, {"n2": 2})
        core.role = a
        if trigger in TRANSITIONS.get((a, b), ()):
            core.become(b, trigger)
            assert core.role is b
        else:
            with pytest.raises(IllegalTransition, match=f"{a.value} -> {b.value}"):
                core.become(b, trigger)
            assert core.role is a


def role_diagram() -> str:
    """The role table as a Mermaid state diagram, for docs/architecture.md."""
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> member"]
    for (a, b), triggers in TRANSITIONS.items():
        lines.append(f"    {a.value} --> {b.value}: {', '.join(sorted(t.value for t in triggers))}")
    return "\n".join([*lines, "```"])


def test_the_architecture_doc_draws_the_role_table():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    drawn = doc.split("<!-- roles:begin -->\n")[1].split("<!-- roles:end -->")[0].strip()
    assert drawn == role_diagram(), f"docs/architecture.md should draw:\n{role_diagram()}"
