"""Shared pieces of the benchmarks: latency summaries, with the one percentile the project uses."""

from __future__ import annotations

import statistics

from p2pq.stats import percentile  # nearest rank, as the simulator's and the chaos run's figures


def summary_ms(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3) if ms else None}
