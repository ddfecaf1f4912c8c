"""Dispatching tasks to free slots, running them, and taking back the lost.

Theory of operation
-------------------
Only the leader dispatches. Whenever a node has a free slot it takes the
most urgent queued task (G4), adds a new attempt (node, start) to its record
and sends the node ``Dispatch`` with that record. The node runs it and sends
``Finished`` with the record, the attempt ended, to whoever leads by then;
it keeps the result until the leader acknowledges it, and the leader
acknowledges only after the result is replicated, so a finished task cannot
be forgotten in a failover.

Attempts are leases. An attempt goes back to the queue, ended as ``lost``:
- when its node is declared dead (L3), or
- when the node's heartbeat ack stops listing it (the dispatch was lost, or
  the node restarted) a failure timeout after it was dispatched.
A lost attempt whose node was merely cut off may still finish later; then
both attempts are in the history (G2: at-least-once, duplicates visible).

Prefetch. A task that takes a millisecond would otherwise leave its slot
idle for the whole round trip (result to the leader, commit, next dispatch)
and cost every node a step of its own. So while a node's tasks are short,
the leader counts ``prefetch`` more places per slot for it: those tasks wait
at the node and start the moment a slot frees, and every step, message and
journal commit carries several tasks. "Short": the gaps between the node's
results, times its slots, average under ``prefetch_below_s``. That is a
task's run time while the node has a queue, and run time plus round trip
while it has none, so the measure never counts the wait that prefetch
itself adds. The leader still hands out tasks in G4 order; a task
dispatched later waits behind at most the node's prefetched ones, each
short by this very measure. A node not yet timed (new, or a new leader) and
a node running longer tasks get no more than their slots.
"""

from __future__ import annotations

from dataclasses import replace
from .events import Note, RunTask, SetTimer, StopTask
from .messages import CancelRun, Dispatch, Finished, FinishedAck, HeartbeatAck
from .state import NodeState
from .tasks import LOST, Attempt, TaskRecord
from .types import NodeId, Role
from .types import attempt_id as make_attempt_id


# -- leader: dispatch ----------------------------------------------------------
def dispatch(core: NodeState) -> None:
    """Fill free slots with the most urgent runnable tasks (G4)."""
    free = _free_slots(core)
    while free:
        record, next_at = core.table.pop_runnable(
            core.now, core.config.retry_backoff_s, core.config.retry_backoff_max_s)
        if next_at is not None and (core.retry_at is None or next_at < core.retry_at):
            core.retry_at = next_at
            core.out.append(SetTimer("retry", next_at))
        if record is None:
            return
        node = max(free, key=lambda n: (free[n], core.peers[n].rank if n in core.peers else core.rank))
        free[node] -= 1
        if not free[node]:
            del free[node]
        _start_attempt(core, record, node)


def _free_slots(core: NodeState) -> dict[NodeId, int]:
    free: dict[NodeId, int] = {}
    lead = core.lead
    mine = _capacity(core, core.id, core.config.slots) - lead.holding(core.id)
    if mine > 0:
        free[core.id] = mine
    for peer in core.peers.values():
        if peer.alive:
            n = _capacity(core, peer.node, peer.slots) - lead.holding(peer.node)
            if n > 0:
                free[peer.node] = n
    return free


def _capacity(core: NodeState, node: NodeId, slots: int) -> int:
    """Tasks a node may hold: its slots, and `prefetch` per slot while its tasks are short."""
    if core.lead.task_time_s.get(node, float("inf")) < core.config.prefetch_below_s:
        return slots * (1 + core.config.prefetch)
    return slots


def _start_attempt(core: NodeState, record: TaskRecord, node: NodeId) -> None:
    core.attempt_counter += 1
    attempt_id = make_attempt_id(core.term, core.attempt_counter)
    attempt = Attempt(attempt_id, node, core.now)
    record = core.merge(record.with_attempt(attempt)) or record
    core.lead.lease(node, attempt_id, record.task_id, core.now)
    if node == core.id:
        _run_locally(core, record, attempt_id)
    else:
        core.send(node, Dispatch(core.term, record, attempt_id))


def on_retry_timer(core: NodeState) -> None:
    core.retry_at = None  # dispatch, at the end of the step, re-arms it if still needed


# -- any node: running ----------------------------------------------------------
def on_dispatch(core: NodeState, sender: NodeId, msg: Dispatch) -> None:
    if msg.attempt_id in core.executing or msg.attempt_id in core.unacked:
        return  # a duplicate dispatch
    if core.stopping:
        return  # leaving: the attempt is never run, and its lease ends with this node
    core.merge(msg.record)
    _run_locally(core, msg.record, msg.attempt_id)


def _run_locally(core: NodeState, record: TaskRecord, attempt_id: str) -> None:
    core.executing[attempt_id] = record
    core.out.append(RunTask(record.task_id, attempt_id, record.spec))


def on_task_completed(core: NodeState, task_id: str, attempt_id: str, outcome: str,
                      result: dict | None, ended_at: float) -> None:
    record = core.executing.pop(attempt_id, None)
    if record is None:
        return
    attempt = record.attempt(attempt_id)
    ended = replace(attempt, ended_at=ended_at, outcome=outcome, result=result)
    record = record.with_attempt(ended)
    core.merge(record)
    core.unacked[attempt_id] = (record, core.now)
    if core.leader == core.id and core.role is Role.LEADER:
        on_finished(core, core.id, Finished(core.term, record))
    elif core.leader is not None:
        core.send(core.leader, Finished(core.term, record))


def on_finished(core: NodeState, sender: NodeId, msg: Finished) -> None:
    """A result is a fact whatever its term: merge it, ack once replicated."""
    core.merge(msg.record)
    for attempt in msg.record.attempts:
        if attempt.node == sender and not attempt.running:
            if core.lead.unassign(sender, attempt.attempt_id) is not None:
                slots = core.config.slots if sender == core.id else core.peers[sender].slots
                core.lead.time_result(sender, slots, core.now)
            core.lead.await_commit("finished", (sender, attempt.attempt_id))


def on_finished_ack(core: NodeState, sender: NodeId, msg: FinishedAck) -> None:
    for attempt_id in msg.attempt_ids:
        core.unacked.pop(attempt_id, None)


def resend_finished(core: NodeState, force: bool = False) -> None:
    """Results not yet acknowledged go (again) to the current leader."""
    if core.leader is None or core.leader == core.id:
        return
    for attempt_id, (record, sent_at) in list(core.unacked.items()):
        if force or core.now - sent_at >= core.config.failure_timeout_s:
            core.send(core.leader, Finished(core.term, record))
            core.unacked[attempt_id] = (record, core.now)


def on_cancel_run(core: NodeState, sender: NodeId, msg: CancelRun) -> None:
    if msg.attempt_id in core.executing:
        core.out.append(StopTask(msg.task_id, msg.attempt_id))


# -- leader: leases -------------------------------------------------------------
def sweep_leases(core: NodeState) -> None:
    """Take back attempts held by dead nodes, or by us without running them."""
    grace = core.config.failure_timeout_s
    assigned = core.lead.assigned
    for node in [n for n in assigned if n != core.id and not core.is_live_peer(n)]:
        reclaim_node(core, node)
    held = set(core.executing) | set(core.unacked)
    for attempt_id, (task_id, since) in list(assigned.get(core.id, {}).items()):
        if attempt_id not in held and core.now - since >= grace:
            _lose_attempt(core, task_id, attempt_id)


def rebuild_assignments(core: NodeState) -> None:
    """A new leader learns who runs what from the merged table (and times nodes afresh)."""
    lead = core.lead
    lead.assigned, lead.task_time_s, lead.last_result_at = {}, {}, {}
    for record in core.table.with_running_attempts():
        for attempt in record.running_attempts():
            if attempt.node == core.id and attempt.attempt_id not in core.executing:
                _lose_attempt(core, record.task_id, attempt.attempt_id)
            elif attempt.node != core.id and not core.is_live_peer(attempt.node):
                _lose_attempt(core, record.task_id, attempt.attempt_id)
            else:
                lead.lease(attempt.node, attempt.attempt_id, record.task_id, core.now)


def _lose_attempt(core: NodeState, task_id: str, attempt_id: str) -> None:
    """L3: the attempt's node is gone; end it as lost, the task requeues."""
    record = core.table.get(task_id)
    attempt = record.attempt(attempt_id) if record else None
    if attempt is None or not attempt.running:
        return
    core.merge(record.with_attempt(replace(attempt, ended_at=core.now, outcome=LOST)))
    core.lead.unassign(attempt.node, attempt_id)
    core.out.append(Note("task_requeued", {"task": task_id, "node": attempt.node}))


def reclaim_node(core: NodeState, node: NodeId) -> None:
    assigned = core.lead.assigned
    for attempt_id, (task_id, _) in list(assigned.get(node, {}).items()):
        _lose_attempt(core, task_id, attempt_id)
    assigned.pop(node, None)


def on_heartbeat_ack(core: NodeState, sender: NodeId, msg: HeartbeatAck) -> None:
    """Reconcile: what the node no longer reports running was lost."""
    core.peers[sender].slots = msg.slots
    if msg.term != core.term:
        return
    busy = set(msg.busy)
    grace = core.config.failure_timeout_s
    for attempt_id, (task_id, since) in list(core.lead.assigned.get(sender, {}).items()):
        if attempt_id not in busy and core.now - since >= grace:
            _lose_attempt(core, task_id, attempt_id)


def cancel_attempts(core: NodeState, record: TaskRecord) -> None:
    for attempt in record.running_attempts():
        if attempt.node == core.id:
            if attempt.attempt_id in core.executing:
                core.out.append(StopTask(record.task_id, attempt.attempt_id))
        else:
            core.send(attempt.node, CancelRun(core.term, record.task_id, attempt.attempt_id))
