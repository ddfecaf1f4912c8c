"""Statistics shared by the simulator's reports and the real cluster's (chaos, benchmarks)."""

from __future__ import annotations

from typing import Iterable


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100) of `values`, in any order; NaN for none.

    The smallest value that at least p % of the values are at or below: one
    of the values, never an interpolation (p50 of 4 values is the second).
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(min(rank, len(ordered))) - 1]
