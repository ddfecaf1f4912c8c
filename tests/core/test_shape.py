"""The core's shape: modules that call only downwards, and role tables the term gate can trust."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import node, recv
from p2pq.core.events import TimerFired
from p2pq.core.messages import Answer, Coordinator, StateOffer
from p2pq.core.node import OBEYED, ON_MESSAGE, ON_TIMER, TERM_POLICY
from p2pq.core.types import Role, Term
from test_term_gate import example

CORE = Path(__file__).parents[2] / "p2pq" / "core"


def core_imports() -> dict[str, set[str]]:
    """Module -> the p2pq.core modules it imports (TYPE_CHECKING imports too)."""
    names = {p.stem for p in CORE.glob("*.py")}
    graph = {}
    for path in CORE.glob("*.py"):
        deps = set()
        for stmt in ast.walk(ast.parse(path.read_text())):
            if isinstance(stmt, ast.ImportFrom) and stmt.level == 1:
                deps |= {stmt.module.split(".")[0]} if stmt.module else {a.name for a in stmt.names}
            elif isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("p2pq.core."):
                deps.add(stmt.module.split(".")[2])
        graph[path.stem] = deps & names
    return graph


def test_the_core_has_no_import_cycle():
    graph = core_imports()
    assert graph["state"] and graph["node"] >= {"election", "membership", "replication", "scheduler"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + (module,)))
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_every_role_has_a_table_and_every_peer_message_a_handler_somewhere():
    assert set(ON_MESSAGE) == set(Role) == set(ON_TIMER)
    handled = {cls for table in ON_MESSAGE.values() for cls in table}
    assert handled | {cls for cls in TERM_POLICY if cls.__name__ == "Leave"} == set(TERM_POLICY)
    for role, table in ON_MESSAGE.items():
        assert set(table) <= set(TERM_POLICY), role


def test_a_leader_message_is_handled_only_by_a_member():
    """The gate makes the node a member or drops the message, so only MEMBER's table lists them."""
    for role, table in ON_MESSAGE.items():
        obeyed = [cls.__name__ for cls in table if TERM_POLICY[cls] is OBEYED]
        assert (obeyed != []) is (role is Role.MEMBER), (role, obeyed)


FIRST = Term(9, "n3")


def in_role(role: Role):
    """n2 (of n1-n4, by priority) in `role`; it followed n3 under FIRST before."""
    n2 = node("n2", 2, {"n1": 1, "n3": 3, "n4": 4})
    recv(n2, "n3", Coordinator(FIRST, 3), 0.1)
    if role is not Role.MEMBER:
        n2.handle(TimerFired("tick"), 1.5)  # n3 fell silent: n2 asks n4 (step 1)
    if role is Role.WAITING:
        recv(n2, "n4", Answer(FIRST), 1.6)
    elif role in (Role.GATHERING, Role.LEADER):
        n2.handle(TimerFired("election"), 2.0)  # n4 never answered: n2 won
        if role is Role.LEADER:
            recv(n2, "n1", StateOffer(n2.term, (), ()), 2.1)
    assert n2.role is role
    return n2


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("cls", [c for c, p in TERM_POLICY.items() if p is OBEYED])
def test_after_the_gate_a_leader_message_finds_a_member(monkeypatch, role, cls):
    seen = []
    for table_role, table in ON_MESSAGE.items():
        if table_role is not Role.MEMBER:
            monkeypatch.setitem(table, cls, lambda core, sender, msg, r=table_role: seen.append(r))
    # the term it followed (a candidate learns its leader lives), a newer one, an older one
    for sender, term in (("n3", FIRST), ("n3", Term(50, "n3")), ("n1", Term(60, "n1")), ("n3", Term(1, "n3"))):
        n2 = in_role(role)
        recv(n2, sender, example(cls, term), 2.5)
        assert not seen, f"{cls.__name__} from {sender} under {term} handled by a {seen[0].value}"
