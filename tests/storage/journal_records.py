"""Task records for the journal tests."""

from __future__ import annotations

from p2pq.core.tasks import Attempt, TaskRecord, TaskSpec

SPEC = TaskSpec("builtin", "noop")


def record(task_id: str, ended: bool = False, seq: int = 1) -> TaskRecord:
    """A task with one attempt, running or succeeded."""
    attempts = (Attempt(f"{task_id}-a", "n1", 1.0, 2.0 if ended else None,
                        "succeeded" if ended else None, {"value": [1, "x"]} if ended else None),)
    return TaskRecord(task_id, SPEC, (1, seq), 0.5, attempts)
