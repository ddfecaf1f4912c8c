"""The checker on hand-made histories: each anomaly is found and counted."""

from __future__ import annotations

from p2pq.core.tasks import LOST, SUCCEEDED, Attempt, TaskRecord, TaskSpec
from p2pq.sim.checker import check, overlap_s, union
from p2pq.sim.history import History, Leadership

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


def test_a_batch_dispatched_in_priority_order_is_not_an_inversion():
    h = History()
    for task, priority in (("urgent", 1), ("lazy", 9)):
        h.invoke(task, priority, 0.0)
        h.ack(task, 0.1, "1@n1", True)
    h.dispatch("urgent", "1.n1.1", 0.5)
    h.dispatch("lazy", "1.n1.2", 0.5)
    assert check(h, {}).priority_inversions == 0


def test_a_dispatch_that_never_started_still_counts_as_the_leaders_choice():
    """The urgent task was dispatched (to a node that died) before the lazy one: no inversion."""
    h = History()
    for task, priority in (("urgent", 1), ("lazy", 9)):
        h.invoke(task, priority, 0.0)
        h.ack(task, 0.1, "1@n1", True)
    h.dispatch("urgent", "1.n1.1", 0.4)
    h.execution_start("lazy", "1.n1.2", "n2", 0.5, 0.5)
    h.execution_start("urgent", "1.n1.3", "n3", 2.0, 2.0)
    assert check(h, {}).priority_inversions == 0


def test_two_terms_acknowledging_at_once_fail_quorum_mode_only():
    h = History()
    for at, term in ((1.0, "1@n5"), (2.0, "2@n4"), (2.5, "1@n5"), (3.0, "2@n4")):
        h.ack_issued(at, term.split("@")[1], term)
    quorum, available = check(h, {}, quorum=True), check(h, {}, quorum=False)
    assert quorum.stale_acks == available.stale_acks == 1  # 1@n5 after 2@n4 had acknowledged
    assert quorum.concurrent_ack_s == available.concurrent_ack_s == 0.5  # [1, 2.5] against [2, 3]
    assert not quorum.ok and available.ok


def test_terms_that_take_turns_are_not_concurrent():
    h = History()
    for at, term in ((1.0, "1@n5"), (1.5, "1@n5"), (2.0, "2@n4"), (3.0, "2@n4")):
        h.ack_issued(at, term.split("@")[1], term)
    report = check(h, {}, quorum=True)
    assert report.ok and report.stale_acks == 0 and report.concurrent_ack_s == 0


def test_time_with_two_leaders_is_measured_from_leaderships():
    h = History()
    h.leaderships += [Leadership("n5", "1@n5", 1.0, 5.0), Leadership("n4", "2@n4", 3.0, 9.0)]
    assert check(h, {}).multi_leader_s == 2.0


def test_failover_runs_from_the_loss_to_the_first_acknowledgment_under_a_newer_term():
    h = History()
    h.leader_losses.append((3.0, "n5", "1@n5"))
    h.leader_losses.append((8.0, "n4", "2@n4"))  # never replaced: unfinished
    for at, term in ((2.9, "1@n5"), (3.5, "1@n5"), (4.2, "2@n4")):
        h.ack_issued(at, term.split("@")[1], term)
    report = check(h, {})
    assert report.failover_s == [1.2] and report.failovers_unfinished == 1


def test_unavailability_is_the_union_of_slow_waits():
    h = History()
    for task, invoked, acked in (("a", 1.0, 2.0), ("b", 1.5, 2.5), ("c", 3.0, 3.01), ("d", 5.0, 6.0)):
        h.invoke(task, 5, invoked)
        h.ack(task, acked, "1@n1", True)
    report = check(h, {"a": done("a", SUCCEEDED), "b": done("b", SUCCEEDED), "c": done("c", SUCCEEDED),
                       "d": done("d", SUCCEEDED)})
    assert report.unavailable_windows == 2 and report.unavailable_s == 2.5


def test_interval_helpers():
    assert union([(0, 1), (0.5, 2), (3, 4)]) == [(0, 2), (3, 4)]
    assert overlap_s([(0, 2), (1, 3), (2.5, 4)]) == 1.5
    assert overlap_s([(0, 1), (1, 2)]) == 0
