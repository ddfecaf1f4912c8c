"""Unavailable time, put down to the fault event before each window (the chaos report's breakdown)."""

from p2pq.sim.history import History
from p2pq.testing.history import unavailable_by_cause


def op(history: History, task_id: str, invoked: float, acked: float) -> None:
    history.invoke(task_id, 1, invoked)
    history.ack(task_id, acked, "1@n1", True)


def test_each_window_goes_to_the_last_fault_event_before_it():
    h = History()
    h.fault(10.0, "kill-9", "n5")
    h.fault(20.0, "restart", "n5")
    op(h, "fast", 5.0, 5.01)          # healthy: not a window
    op(h, "a", 9.8, 11.0)             # invoked just before the kill, waited for the failover
    op(h, "b", 10.2, 11.2)            # the same window
    op(h, "c", 20.1, 21.0)            # a window after the restart (the takeover)
    op(h, "d", 30.0, 30.3)            # 0.3 s: under the threshold
    assert unavailable_by_cause(h) == {"kill-9": (1.4, 1), "restart": (0.9, 1)}


def test_a_window_before_any_fault_is_put_down_to_none():
    h = History()
    op(h, "a", 1.0, 3.0)
    assert unavailable_by_cause(h) == {"none": (2.0, 1)}
