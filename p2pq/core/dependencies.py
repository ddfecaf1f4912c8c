"""Tasks that run after others (``TaskSpec.after``): blocked until every one of them succeeded.

Theory of operation
-------------------
A task submitted with ``after`` ids is ``blocked``: it is replicated like
any task (G1) but never dispatched. The leader decides it when the tasks it
waits for decide, with two facts it merges into the record, each a join in
the record's lattice and so replicated and safe to repeat:

- every one succeeded: the record is ``released`` and becomes queued, in
  its priority's place (G4 among the runnable);
- one failed or was cancelled: the record gets a failed attempt of its own
  (id ``after:...``, never run) saying ``dependency <id> failed``, which is
  final whatever its retries, and decides the tasks after it in turn.

Only tasks already held, or in the same submit, may be named, so a cycle
can only be made within one submit; it is refused there, with an unknown or
pruned id. A new leader decides again every blocked task it holds (its
predecessor may have died between a dependency's end and the decision).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Iterable

from .tasks import DEPENDENCY_FAILED, FAILED, Attempt, TaskRecord, TaskSpec, TaskState, TaskTable
from .types import NodeId


def refusal(table: TaskTable, forgotten: Iterable[str], tasks: Iterable[tuple[str, TaskSpec]]) -> str | None:
    """Why a submit's dependencies cannot be taken (an unknown or pruned id, a cycle), if so."""
    tasks = list(tasks)
    batch = {task_id: spec for task_id, spec in tasks if task_id}
    for task_id, spec in tasks:
        for dep in spec.after:
            if dep == task_id:
                return f"task {task_id} cannot run after itself"
            if dep in batch or dep in table:
                continue
            if dep in forgotten:
                return (f"task {task_id or '(new)'} runs after {dep}, which finished and was pruned: "
                        "its outcome is no longer known")
            return f"task {task_id or '(new)'} runs after {dep}: no task with that id"
    cycle = _cycle({task_id: [d for d in spec.after if d in batch] for task_id, spec in batch.items()})
    return f"the tasks' dependencies form a cycle: {' -> '.join(cycle)}" if cycle else None


def _cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in the graph, as the path that closes it; iterative (a chain may be long)."""
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path, on_path, stack = [], set(), [(start, iter(edges[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return path[path.index(child):] + [child]
            elif child not in done:
                stack.append((child, iter(edges.get(child, ()))))
                path.append(child)
                on_path.add(child)
    return None


def verdict(table: TaskTable, record: TaskRecord, node: NodeId, now: float) -> TaskRecord | None:
    """What a blocked record becomes now: released, failed, or None while it must wait."""
    waiting = False
    for dep in record.spec.after:
        other = table.get(dep)
        if other is None or not other.state.terminal:
            waiting = True
        elif other.state is not TaskState.SUCCEEDED:
            how = "failed" if other.state is TaskState.FAILED else "was cancelled"
            tag = hashlib.blake2b(dep.encode(), digest_size=8).hexdigest()
            failed = Attempt(f"{DEPENDENCY_FAILED}{tag}", node, now, now, FAILED,
                             {"status": "failed", "error": f"dependency {dep} {how}"})
            return record.with_attempt(failed)
    return None if waiting else replace(record, released=True)
