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
from typing import TYPE_CHECKING

from .events import Note, RunTask, SetTimer, StopTask
from .messages import CancelRun, Dispatch, Finished, FinishedAck, HeartbeatAck
from .tasks import LOST, Attempt, TaskRecord
from .types import NodeId, Role
from .types import attempt_id as make_attempt_id

if TYPE_CHECKING:
    from .node import NodeCore

    _Base = NodeCore
else:
    _Base = object


class SchedulerMixin(_Base):
    # -- leader: dispatch ----------------------------------------------------------
    def _dispatch(self) -> None:
        """Fill free slots with the most urgent runnable tasks (G4)."""
        if self.role is not Role.LEADER:
            return
        free = self._free_slots()
        while free:
            record, next_at = self.table.pop_runnable(
                self.now, self.config.retry_backoff_s, self.config.retry_backoff_max_s)
            if next_at is not None and (self.retry_at is None or next_at < self.retry_at):
                self.retry_at = next_at
                self.out.append(SetTimer("retry", next_at))
            if record is None:
                return
            node = max(free, key=lambda n: (free[n], self.peers[n].rank if n in self.peers else self.rank))
            free[node] -= 1
            if not free[node]:
                del free[node]
            self._start_attempt(record, node)

    def _free_slots(self) -> dict[NodeId, int]:
        free: dict[NodeId, int] = {}
        lead = self.lead
        mine = self._capacity(self.id, self.config.slots) - lead.holding(self.id)
        if mine > 0:
            free[self.id] = mine
        for peer in self.peers.values():
            if peer.alive:
                n = self._capacity(peer.node, peer.slots) - lead.holding(peer.node)
                if n > 0:
                    free[peer.node] = n
        return free

    def _capacity(self, node: NodeId, slots: int) -> int:
        """Tasks a node may hold: its slots, and `prefetch` per slot while its tasks are short."""
        if self.lead.task_time_s.get(node, float("inf")) < self.config.prefetch_below_s:
            return slots * (1 + self.config.prefetch)
        return slots

    def _start_attempt(self, record: TaskRecord, node: NodeId) -> None:
        self.attempt_counter += 1
        attempt_id = make_attempt_id(self.term, self.attempt_counter)
        attempt = Attempt(attempt_id, node, self.now)
        record = self._merge(record.with_attempt(attempt)) or record
        self.lead.lease(node, attempt_id, record.task_id, self.now)
        if node == self.id:
            self._run_locally(record, attempt_id)
        else:
            self._send(node, Dispatch(self.term, record, attempt_id))

    def _on_retry_timer(self) -> None:
        self.retry_at = None  # _dispatch (in flush) re-arms it if still needed

    # -- any node: running ----------------------------------------------------------
    def _on_dispatch(self, sender: NodeId, msg: Dispatch) -> None:
        if msg.attempt_id in self.executing or msg.attempt_id in self.unacked:
            return  # a duplicate dispatch
        if self.stopping:
            return  # leaving: the attempt is never run, and its lease ends with this node
        self._merge(msg.record)
        self._run_locally(msg.record, msg.attempt_id)

    def _run_locally(self, record: TaskRecord, attempt_id: str) -> None:
        self.executing[attempt_id] = record
        self.out.append(RunTask(record.task_id, attempt_id, record.spec))

    def _on_task_completed(self, task_id: str, attempt_id: str, outcome: str,
                           result: dict | None, ended_at: float) -> None:
        record = self.executing.pop(attempt_id, None)
        if record is None:
            return
        attempt = record.attempt(attempt_id)
        ended = replace(attempt, ended_at=ended_at, outcome=outcome, result=result)
        record = record.with_attempt(ended)
        self._merge(record)
        self.unacked[attempt_id] = (record, self.now)
        if self.leader == self.id and self.role is Role.LEADER:
            self._on_finished(self.id, Finished(self.term, record))
        elif self.leader is not None:
            self._send(self.leader, Finished(self.term, record))

    def _on_finished(self, sender: NodeId, msg: Finished) -> None:
        """A result is a fact whatever its term: merge it, ack once replicated."""
        if self.role is not Role.LEADER:
            return
        self._merge(msg.record)
        for attempt in msg.record.attempts:
            if attempt.node == sender and not attempt.running:
                if self.lead.unassign(sender, attempt.attempt_id) is not None:
                    slots = self.config.slots if sender == self.id else self.peers[sender].slots
                    self.lead.time_result(sender, slots, self.now)
                self.lead.await_commit("finished", (sender, attempt.attempt_id))

    def _on_finished_ack(self, msg: FinishedAck) -> None:
        for attempt_id in msg.attempt_ids:
            self.unacked.pop(attempt_id, None)

    def _resend_finished(self, force: bool = False) -> None:
        """Results not yet acknowledged go (again) to the current leader."""
        if self.leader is None or self.leader == self.id:
            return
        for attempt_id, (record, sent_at) in list(self.unacked.items()):
            if force or self.now - sent_at >= self.config.failure_timeout_s:
                self._send(self.leader, Finished(self.term, record))
                self.unacked[attempt_id] = (record, self.now)

    def _on_cancel_run(self, msg: CancelRun) -> None:
        if msg.attempt_id in self.executing:
            self.out.append(StopTask(msg.task_id, msg.attempt_id))

    def _busy(self) -> tuple[str, ...]:
        return tuple(self.executing) + tuple(self.unacked)

    # -- leader: leases -------------------------------------------------------------
    def _note_running(self, task_id: str, attempt: Attempt) -> None:
        """Every running attempt a leader learns of is a lease it must watch."""
        if self.lead is not None and attempt.running:
            self.lead.assigned.setdefault(attempt.node, {}).setdefault(attempt.attempt_id, (task_id, self.now))

    def _sweep_leases(self) -> None:
        """Take back attempts held by dead nodes, or by us without running them."""
        grace = self.config.failure_timeout_s
        assigned = self.lead.assigned
        for node in [n for n in assigned if n != self.id and not self._is_live_peer(n)]:
            self._reclaim_node(node)
        held = set(self.executing) | set(self.unacked)
        for attempt_id, (task_id, since) in list(assigned.get(self.id, {}).items()):
            if attempt_id not in held and self.now - since >= grace:
                self._lose_attempt(task_id, attempt_id)

    def _rebuild_assignments(self) -> None:
        """A new leader learns who runs what from the merged table (and times nodes afresh)."""
        lead = self.lead
        lead.assigned, lead.task_time_s, lead.last_result_at = {}, {}, {}
        for record in self.table.with_running_attempts():
            for attempt in record.running_attempts():
                if attempt.node == self.id and attempt.attempt_id not in self.executing:
                    self._lose_attempt(record.task_id, attempt.attempt_id)
                elif attempt.node != self.id and not self._is_live_peer(attempt.node):
                    self._lose_attempt(record.task_id, attempt.attempt_id)
                else:
                    lead.lease(attempt.node, attempt.attempt_id, record.task_id, self.now)

    def _is_live_peer(self, node: NodeId) -> bool:
        peer = self.peers.get(node)
        return peer is not None and peer.alive

    def _lose_attempt(self, task_id: str, attempt_id: str) -> None:
        """L3: the attempt's node is gone; end it as lost, the task requeues."""
        record = self.table.get(task_id)
        attempt = record.attempt(attempt_id) if record else None
        if attempt is None or not attempt.running:
            return
        self._merge(record.with_attempt(replace(attempt, ended_at=self.now, outcome=LOST)))
        self.lead.unassign(attempt.node, attempt_id)
        self.out.append(Note("task_requeued", {"task": task_id, "node": attempt.node}))

    def _reclaim_node(self, node: NodeId) -> None:
        assigned = self.lead.assigned
        for attempt_id, (task_id, _) in list(assigned.get(node, {}).items()):
            self._lose_attempt(task_id, attempt_id)
        assigned.pop(node, None)

    def _on_heartbeat_ack(self, sender: NodeId, msg: HeartbeatAck) -> None:
        """Reconcile: what the node no longer reports running was lost."""
        peer = self.peers[sender]
        peer.slots = msg.slots
        if msg.term != self.term or self.role is not Role.LEADER:
            return
        busy = set(msg.busy)
        grace = self.config.failure_timeout_s
        for attempt_id, (task_id, since) in list(self.lead.assigned.get(sender, {}).items()):
            if attempt_id not in busy and self.now - since >= grace:
                self._lose_attempt(task_id, attempt_id)

    def _cancel_attempts(self, record: TaskRecord) -> None:
        for attempt in record.running_attempts():
            if attempt.node == self.id:
                if attempt.attempt_id in self.executing:
                    self.out.append(StopTask(record.task_id, attempt.attempt_id))
            else:
                self._send(attempt.node, CancelRun(self.term, record.task_id, attempt.attempt_id))
