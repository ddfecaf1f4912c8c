"""The checker on hand-made histories: each anomaly is found and counted."""

from __future__ import annotations

from p2pq.core.tasks import LOST, SUCCEEDED, Attempt, TaskRecord, TaskSpec
from p2pq.sim.checker import check
from p2pq.sim.history import History

SPEC = TaskSpec("builtin", "noop")


def done(task_id: str, *outcomes: str) -> TaskRecord:
    attempts = tuple(Attempt(f"1.n1.{i}", "n1", float(i), float(i) + 0.5, o) for i, o in enumerate(outcomes))
    return TaskRecord(task_id, SPEC, (1, 1), 0.0, attempts)


def history_with(*task_ids: str, acked: bool = True) -> History:
    h = History()
    for t in task_ids:
        h.invoke(t, 5, 0.0)
        if acked:
            h.ack(t, 0.1, "1@n1", True)
    return h


def test_a_clean_history_passes():
    h = history_with("a", "b")
    report = check(h, {"a": done("a", SUCCEEDED), "b": done("b", SUCCEEDED)})
    assert report.ok and report.acknowledged == 2 and report.lost == 0


def test_an_acknowledged_task_missing_or_unfinished_is_lost():
    h = history_with("a", "b")
    unfinished = TaskRecord("b", SPEC, (1, 2), 0.0)
    report = check(h, {"b": unfinished})
    assert report.lost == 2 and report.lost_ids == ["a", "b"] and not report.ok


def test_a_task_nobody_submitted_is_unexpected():
    h = history_with("a")
    report = check(h, {"a": done("a", SUCCEEDED), "ghost": done("ghost", SUCCEEDED)})
    assert report.unexpected == 1 and not report.ok


def test_two_successful_executions_are_a_duplicate_not_a_failure():
    h = history_with("a")
    h.execution_start("a", "1.n1.1", "n1", 1.0, 1.0)
    h.execution_end("1.n1.1", 1.5, SUCCEEDED)
    h.execution_start("a", "2.n2.1", "n2", 2.0, 2.0)
    h.execution_end("2.n2.1", 2.5, SUCCEEDED)
    report = check(h, {"a": done("a", LOST, SUCCEEDED)})
    assert report.duplicated == 1 and report.ok


def test_an_unacknowledged_task_that_finished_is_recovered():
    h = history_with("a", acked=False)
    report = check(h, {"a": done("a", SUCCEEDED)})
    assert report.recovered == 1 and report.lost == 0


def test_two_leaders_in_one_term_are_reported():
    h = history_with()
    h.note(1.0, "n3", "leader_elected", {"term": "4@n3"})
    h.note(1.1, "n2", "leader_elected", {"term": "4@n3"})
    report = check(h, {})
    assert report.leaders_per_term_max == 2 and not report.ok


def test_a_priority_inversion_is_counted():
    h = History()
    h.invoke("urgent", 1, 0.0)
    h.ack("urgent", 0.1, "1@n1", True)
    h.invoke("lazy", 9, 0.0)
    h.ack("lazy", 0.1, "1@n1", True)
    h.execution_start("lazy", "1.n1.1", "n2", 0.5, 0.5)
    h.execution_start("urgent", "1.n1.2", "n2", 0.9, 0.9)
    assert check(h, {}).priority_inversions == 1
