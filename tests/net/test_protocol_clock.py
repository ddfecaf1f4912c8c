"""The protocol clock ignores steps of the wall clock and keeps its pace."""

from __future__ import annotations

import pytest

from p2pq.net.clock import ProtocolClock


class Fake:
    def __init__(self) -> None:
        self.wall, self.mono = 1_700_000_000.0, 50.0

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s


def test_it_reads_wall_time_at_start_and_advances_with_the_monotonic_clock():
    fake = Fake()
    clock = ProtocolClock(wall=lambda: fake.wall, monotonic=lambda: fake.mono)
    assert clock.now() == 1_700_000_000.0
    fake.advance(2.5)
    assert clock.now() == 1_700_000_002.5


def test_a_step_of_the_wall_clock_moves_no_duration():
    fake = Fake()
    clock = ProtocolClock(wall=lambda: fake.wall, monotonic=lambda: fake.mono)
    before = clock.now()
    deadline = before + 0.2  # a heartbeat from now
    for step in (-10.0, +3600.0, -7200.0):
        fake.wall += step
        assert clock.now() == before
        assert clock.delay_until(deadline) == pytest.approx(0.2)
    fake.advance(0.3)
    assert clock.delay_until(deadline) == 0.0
