"""The protocol's clock: wall-clock seconds at start, advancing with the monotonic clock.

Every duration the core measures (heartbeats, failure detection, leases,
retry backoff, timeouts) is a difference of two readings of this clock, so
an NTP step of the wall clock (back or forward, by any amount) changes
none of them: the kernel's CLOCK_MONOTONIC is never stepped, only slewed.
The readings still look like wall time, so the timestamps a task record
carries (submitted, started, ended) mean something to people; they are off
by whatever step the wall clock took since the node started, and line up
again at the node's next start.
"""

from __future__ import annotations

import time
from typing import Callable


class ProtocolClock:
    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._origin_mono = monotonic()
        self._origin_wall = wall()

    def now(self) -> float:
        return self._origin_wall + (self._monotonic() - self._origin_mono)

    def delay_until(self, at_s: float) -> float:
        """Seconds from now until this clock reads `at_s` (0 if past)."""
        return max(0.0, at_s - self.now())
