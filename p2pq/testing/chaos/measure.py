"""Failover, catch-up and cold-discovery times of a real cluster (`--measure`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from p2pq.stats import percentile

from ..cluster import wait_for
from ..netns import NetnsCluster, term_key, wait_port
from .run import SETTLE_S, Run


@dataclass
class Measurements:
    failover_s: list[float] = field(default_factory=list)
    port_up_s: list[float] = field(default_factory=list)       # restart -> accepting connections
    rejoined_s: list[float] = field(default_factory=list)      # restart -> alive in the leader's view
    caught_up_s: list[float] = field(default_factory=list)     # restart -> leads again (after its snapshot)
    cold_formed_s: list[float] = field(default_factory=list)   # spawn of 5 -> one agreed leader


def measure_failover(run: Run, kills: int, log: Callable[[str], None]) -> Measurements:
    """Kill the leader `kills` times under load from clients on nodes that are never killed."""
    m = Measurements()
    for k in range(kills):
        run.settle(f"round {k}")
        leader, term = run.leader()
        killed_at = run.kill(leader, term)
        first = wait_for(lambda: run.recorder.first_ack_after(killed_at, lambda t: t != term),
                         30, "a submit acknowledged under a new term", interval_s=0.01)
        m.failover_s.append(first - killed_at)
        run.leader()
        restarted_at = run.restart(leader)
        node = run.cluster.nodes[leader]
        wait_port(node.host, node.port, 30)
        m.port_up_s.append(time.time() - restarted_at)
        m.rejoined_s.append(_wait_rejoined(run, leader, restarted_at))
        m.caught_up_s.append(_wait_leads_again(run, leader, term, restarted_at))
        log(f"kill {k + 1}/{kills} of {node.node_id} ({term}): failover {m.failover_s[-1]:.3f} s; "
            f"restarted: port {m.port_up_s[-1]:.2f} s, rejoined {m.rejoined_s[-1]:.2f} s, "
            f"leads again {m.caught_up_s[-1]:.2f} s")
    return m


def _wait_rejoined(run: Run, index: int, since: float) -> float:
    node_id = run.cluster.nodes[index].node_id

    def seen_by_all():
        others = [i for i in run.cluster.running_indexes() if i != index]
        return all(any(m["node"] == node_id and m["alive"] for m in run.cluster.view(i)["members"])
                   for i in others)
    wait_for(seen_by_all, 60, f"every other node to see {node_id} alive again", interval_s=0.02)
    return time.time() - since


def _wait_leads_again(run: Run, index: int, old_term: str, since: float) -> float:
    node_id = run.cluster.nodes[index].node_id

    def leads():
        for at, node, kind, detail in run.cluster.notes():
            if node == node_id and kind == "leader_elected" and at >= since \
                    and term_key(detail["term"]) > term_key(old_term):
                return at
        return None
    return wait_for(leads, 60, f"{node_id} to lead again", interval_s=0.05) - since


def measure_cold_discovery(times: int, size: int, log: Callable[[str], None]) -> list[float]:
    out = []
    for k in range(times):
        cluster = NetnsCluster(size)
        try:
            t0 = time.monotonic()
            cluster.start(wait=False)
            cluster.wait_formed(SETTLE_S)
            out.append(time.monotonic() - t0)
            log(f"cold start {k + 1}/{times}: {size} nodes formed by mDNS in {out[-1]:.2f} s")
        finally:
            cluster.stop()
    return out


def measurement_rows(m: Measurements) -> list[tuple[str, str]]:
    def dist(values: list[float]) -> str:
        if not values:
            return "-"
        return (f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} / "
                f"{min(values):.2f}..{max(values):.2f} (n={len(values)})")
    return [("failover s p50 / p99 / range", dist(m.failover_s)),
            ("restart: port open s", dist(m.port_up_s)),
            ("restart: rejoined s", dist(m.rejoined_s)),
            ("restart: caught up, leads s", dist(m.caught_up_s)),
            ("cold start: 5 formed s", dist(m.cold_formed_s))]
