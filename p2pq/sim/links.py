"""Link models: how long a message takes, and whether it arrives once, twice or never.

A latency distribution is a small frozen object called with the world's
network ``random.Random``; it returns seconds. Frozen dataclasses print
themselves, so a scenario's link faults show up readably in its --trace.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

Latency = Callable[[random.Random], float]


@dataclass(frozen=True, slots=True)
class Uniform:
    """Same switch, same room: a fraction of a millisecond to two."""

    lo_s: float = 0.0005
    hi_s: float = 0.002

    def __call__(self, rng: random.Random) -> float:
        return rng.uniform(self.lo_s, self.hi_s)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A congested or wireless link: a median with a long right tail."""

    median_s: float = 0.02
    sigma: float = 1.0

    def __call__(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


@dataclass(frozen=True, slots=True)
class Spiky:
    """Usually fast, sometimes a long stall (GC pause, bufferbloat, retransmit)."""

    base: Uniform = Uniform()
    spike_s: float = 0.5
    p_spike: float = 0.02

    def __call__(self, rng: random.Random) -> float:
        stall = rng.uniform(0.0, self.spike_s) if rng.random() < self.p_spike else 0.0
        return self.base(rng) + stall


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Per-message latency, plus loss, duplication and reordering.

    Without ``reorder`` a link is FIFO, like the one TCP connection p2pq
    keeps per direction: a message never overtakes an earlier one.
    """

    latency: Latency = Uniform()
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")


LAN = LinkModel()
