"""Pruning finished tasks, so the table and the journal do not grow without bound.

Theory of operation
-------------------
Only the leader prunes, and only finished tasks: every second it drops
the oldest finished tasks beyond ``retain_finished`` and any finished longer
than ``retain_finished_s`` ago. A pruned task leaves a *tombstone* (its id):

- the prune is logged like any change, so followers drop the task too, and
  a snapshot carries every tombstone a new follower must apply;
- a node never merges a record whose id is tombstoned, so a stale copy
  offered by a node that missed the prune cannot bring the task back (and
  run it again);
- a submit that repeats a tombstoned id is acknowledged as the existing
  task it was, not added anew.

Tombstones are kept for the newest ``TOMBSTONES`` pruned ids: far more than
any node can be behind by, at 16 bytes each. Each prune leaves the core as a
``ForgetRecords`` command so the journal deletes the rows.
"""

from __future__ import annotations

from typing import Iterable

from .events import ForgetRecords
from .state import NodeState
from .types import Role


PRUNE_INTERVAL_S = 1.0  # often, so each prune is short: a busy leader finishes thousands of tasks a second
TOMBSTONES = 200_000


def maybe_prune(core: NodeState) -> None:
    """Leader only: forget the finished tasks past their retention."""
    if core.role is not Role.LEADER or core.now < core.next_prune_at:
        return
    core.next_prune_at = core.now + PRUNE_INTERVAL_S
    victims = core.table.oldest_finished(core.config.retain_finished,
                                         core.now - core.config.retain_finished_s)
    if not victims:
        return
    forget(core, victims)
    core.lead.log.extend(victims)


def forget(core: NodeState, task_ids: Iterable[str]) -> None:
    """Drop tasks and remember that they are gone (tombstones)."""
    gone = []
    for task_id in task_ids:
        if task_id in core.forgotten:
            continue
        core.table.remove(task_id)
        core.dirty.pop(task_id, None)
        core.forgotten[task_id] = core.now
        gone.append(task_id)
    while len(core.forgotten) > TOMBSTONES:
        del core.forgotten[next(iter(core.forgotten))]
    if gone:
        core.persist.append(ForgetRecords(tuple(gone)))
