"""Every command type is carried out by both drivers, the runtime and the simulator: none dropped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from p2pq.core.events import (ACTIONS, COMMANDS, DURABLE, ForgetPeer, ForgetRecords, Note, PersistRecords,
                              PersistTerm, Push, Reply, RunTask, Send, SetTimer, Step, StopTask, bind_commands, carry_out)
from p2pq.core.messages import Leave
from p2pq.core.tasks import TaskRecord, TaskSpec
from p2pq.core.types import Term
from p2pq.net.node import NodeRuntime, NodeSettings
from p2pq.net.storage import batch_of
from p2pq.sim.world import World

SPEC = TaskSpec("builtin", "noop")
RECORD = TaskRecord("t1", SPEC, (1, 1), 0.0)


def one_of_each() -> Step:
    step = Step((PersistTerm(Term(2, "n2")), PersistRecords((RECORD,)), ForgetRecords(("t0",))),
                (Send("n2", Leave()), SetTimer("retry", 5.0), Push(2, {"ok": True, "tasks": []}),
                 Reply(1, {"ok": True}),
                 RunTask("t1", "0.n1.1", SPEC), StopTask("t1", "0.n1.1"), ForgetPeer("n3"),
                 Note("leader_elected", {"node": "n1"})))
    assert {type(c) for c in step} == set(COMMANDS)  # a new command type must join this test
    assert {type(c) for c in step.durable} == set(DURABLE) and {type(c) for c in step.actions} == set(ACTIONS)
    return step


def test_the_runtime_journals_every_durable_command_in_one_batch():
    batch = batch_of(one_of_each().durable)
    assert batch.term == Term(2, "n2") and batch.records == {"t1": RECORD} and batch.forgotten == {"t0"}
    with pytest.raises(TypeError, match="does not keep Send"):
        batch_of(one_of_each().actions)


def test_the_runtime_carries_out_every_command(tmp_path):
    runtime = NodeRuntime(NodeSettings(cluster_dir=tmp_path / "cluster", data_dir=tmp_path / "data", port=7470))
    done: list[str] = []
    runtime.core = SimpleNamespace(peers={})
    runtime.transport = SimpleNamespace(send=lambda to, wire: done.append(f"send {to} {wire['type']}"),
                                        forget_peer=lambda node: done.append(f"forget {node}"),
                                        dial_seed=lambda host, port: None)
    runtime.executor = SimpleNamespace(
        submit=lambda attempt_id, *args: done.append(f"run {attempt_id}"),
        cancel=lambda attempt_id: done.append(f"stop {attempt_id}"))
    loop = asyncio.new_event_loop()
    reply = loop.create_future()
    runtime._clients[1] = (reply, 0)
    runtime._clients[2] = (SimpleNamespace(send=lambda frame: done.append(f"{frame['type']} {frame['req']}")), "r2")
    runtime._note = lambda kind, detail: done.append(f"note {kind}")

    async def carry_out():
        runtime._carry_out(one_of_each().actions)
    loop.run_until_complete(carry_out())
    assert done == ["send n2 leave", "push r2", "run 0.n1.1", "stop 0.n1.1", "forget n3", "note leader_elected"]
    assert "retry" in runtime._timers and reply.result() == {"ok": True} and 2 in runtime._clients  # still open
    for handle in runtime._timers.values():
        handle.cancel()
    loop.close()


def test_the_simulator_carries_out_every_command():
    world = World(3, seed=1)
    node = world.nodes["n1"]
    node.alive = True
    answers = []
    world.client_waiting[("n1", 1)] = answers.append
    world.client_waiting[("n1", 2)] = answers.append
    carry_out(one_of_each(), world._do, node)
    assert node.disk_term == Term(2, "n2") and node.disk_records["t1"] is RECORD and "t0" in node.disk_forgotten
    assert node.timers["retry"] == 5.0 and answers == [{"ok": True, "tasks": []}, {"ok": True}]
    assert world.peers_forgotten == [(world.now, "n1", "n3")] and world.messages_by_type["leave"] == 1


def test_a_driver_that_lacks_a_command_is_refused_when_it_starts():
    class Partial:
        def _do_send(self, command):
            pass
    with pytest.raises(TypeError, match="does not carry out _do_persist_term"):
        bind_commands(Partial())
    with pytest.raises(TypeError, match="does not carry out _do_set_timer"):
        bind_commands(Partial(), ACTIONS)


def test_a_command_without_a_handler_is_an_error_not_dropped():
    done, failed = [], []
    handlers = {Send: done.append}
    with pytest.raises(TypeError, match="no handler for the command Note"):
        carry_out([Send("n2", Leave()), Note("x", {})], handlers)
    carry_out([Note("x", {}), Send("n2", Leave())], handlers, on_error=lambda c, exc: failed.append(type(c)))
    assert failed == [Note] and len(done) == 2  # the failing one reported, the next one carried out
