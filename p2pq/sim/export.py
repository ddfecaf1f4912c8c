"""Write sweeps to disk: summary.json, runs.csv and failures.json under --out DIR."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .runner import RunResult
from .sweep import Sweep

RUN_COLUMNS = ("scenario", "mode", "nodes", "seed", "ok", "drained", "attempted", "acknowledged", "lost",
               "unexpected", "duplicated", "recovered", "refused", "gave_up", "terms",
               "leaders_per_term_max", "priority_inversions", "multi_leader_s", "concurrent_ack_s",
               "stale_acks", "failover_s", "failovers_unfinished", "unavailable_s", "unavailable_windows",
               "latency_p50_s", "latency_p99_s", "messages", "trace_hash", "sim_time_s", "wall_s")


def run_row(r: RunResult) -> dict:
    """One run as a flat CSV row (lists joined by ';', message counts as type=n)."""
    rep = r.report
    row = {"scenario": r.scenario, "mode": r.mode, "nodes": r.nodes, "seed": r.seed, "ok": r.ok,
           "drained": r.drained, "trace_hash": r.trace_hash, "sim_time_s": round(r.sim_time_s, 3),
           "wall_s": round(r.wall_s, 4)}
    for key in RUN_COLUMNS:
        if key not in row:
            row[key] = getattr(rep, key)
    row["failover_s"] = ";".join(f"{x:.4f}" for x in rep.failover_s)
    row["messages"] = ";".join(f"{k}={v}" for k, v in rep.messages.items())
    return row


def failure_entry(r: RunResult) -> dict:
    return {"scenario": r.scenario, "mode": r.mode, "seed": r.seed, "problems": r.problems(),
            "replay": r.replay_command()}


def write_sweeps(out: Path, sweeps: list[Sweep], extra: dict | None = None) -> list[Path]:
    """Write the three files; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"sweeps": [s.summary() for s in sweeps], **(extra or {})}
    paths = [out / "summary.json", out / "runs.csv", out / "failures.json"]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n")
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RUN_COLUMNS)
        writer.writeheader()
        for s in sweeps:
            writer.writerows(run_row(r) for r in s.results)
    failures = [failure_entry(r) for s in sweeps for r in s.failures]
    paths[2].write_text(json.dumps(failures, indent=2) + "\n")
    return paths
